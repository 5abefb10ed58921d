package vtower_test

import (
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/vtower/vtower/go/vtower"
)

func Example() {
	model, err := vtower.Load(filepath.Join(fixtures(), "siglip_f32"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer model.Close()

	jpeg, err := os.ReadFile(filepath.Join(fixtures(), "images", "photo.jpg"))
	if err != nil {
		log.Fatal(err)
	}
	embs, err := model.Embed(jpeg)
	if err != nil {
		log.Fatal(err)
	}
	e := embs[0]
	fmt.Printf("%s: %d tokens x %d (%d floats)\n", model.Info().Family, e.Tokens, e.Dim, len(e.Data))

	_, err = model.Embed([]byte("not an image"))
	var verr *vtower.Error
	if errors.As(err, &verr) {
		fmt.Println("status:", verr.Status)
	}
	// Output:
	// siglip: 36 tokens x 64 (2304 floats)
	// status: image could not be decoded
}

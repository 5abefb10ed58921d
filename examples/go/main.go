// Command embed turns images into vision-tower embeddings with vtower's Go bindings.
//
//	go run . <model_dir> <image>...
//
// It loads the model, embeds the images concurrently (one goroutine each, sharing the
// model), and prints each image's token count x embedding width and first values.
package main

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/vtower/vtower/go/vtower"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: embed <model_dir> <image>...")
		os.Exit(2)
	}
	model, err := vtower.Load(os.Args[1], nil)
	if err != nil {
		fail(err)
	}
	defer model.Close()
	info := model.Info()
	fmt.Printf("%s\nmodel: %s (%s), %d-dim output\n", vtower.Version(), info.Family, info.Type, info.OutputDim)

	paths := os.Args[2:]
	results := make([]vtower.Embedding, len(paths))
	errs := make([]error, len(paths))
	var wg sync.WaitGroup
	for i, path := range paths {
		wg.Add(1)
		go func(i int, path string) { // a Model is safe for concurrent use
			defer wg.Done()
			data, err := os.ReadFile(path)
			if err != nil {
				errs[i] = err
				return
			}
			out, err := model.Embed(data)
			if err != nil {
				errs[i] = fmt.Errorf("%s: %w", path, err)
				return
			}
			results[i] = out[0]
		}(i, path)
	}
	wg.Wait()
	for i, e := range results {
		if errs[i] != nil {
			fail(errs[i])
		}
		fmt.Printf("%s: %d tokens x %d, first values: %.5f\n", paths[i], e.Tokens, e.Dim, e.Data[:4])
	}
}

func fail(err error) {
	var verr *vtower.Error
	if errors.As(err, &verr) {
		fmt.Fprintf(os.Stderr, "embed: %v (status %d: %v)\n", err, int(verr.Status), verr.Status)
	} else {
		fmt.Fprintln(os.Stderr, "embed:", err)
	}
	os.Exit(1)
}

// embed (C++): turn images into vision-tower embeddings with vtower.hpp.
//
//   embed_cpp <model_dir> <image>...
//
// Loads the model, preprocesses every image, runs them in one forward call and prints,
// per image, its token count x embedding width and the first values. Errors arrive as
// vtower::Error exceptions (status + message).
#include <cstdio>
#include <fstream>
#include <iterator>
#include <vector>

#include "vtower.hpp"

static std::vector<char> read_file(const char *path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error(std::string("cannot read ") + path);
    return std::vector<char>(std::istreambuf_iterator<char>(f), {});
}

int main(int argc, char **argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: embed_cpp <model_dir> <image>...\n");
        return 2;
    }
    try {
        vtower::Model model(argv[1]);
        std::printf("%s\nmodel: %s (%s), %zu-dim output\n", vtower::version(),
                    model.family().c_str(), model.model_type().c_str(), model.output_dim());

        std::vector<vtower::Image> images;
        for (int i = 2; i < argc; i++) images.push_back(model.preprocess(read_file(argv[i])));
        std::vector<const vtower::Image *> batch;
        for (const vtower::Image &img : images) batch.push_back(&img);

        vtower::Embeddings out = model.forward(batch);
        for (size_t i = 0; i < out.size(); i++) {
            vtower::View<float> rows = out[i];  // [n_tokens, dim], borrowed from `out`
            std::printf("%s: %zu tokens x %zu, first values:", argv[i + 2], out.n_tokens(i),
                        out.dim());
            for (float x : rows.subview(0, 4)) std::printf(" %.5f", x);
            std::printf("\n");
        }
    } catch (const vtower::Error &e) {
        std::fprintf(stderr, "embed_cpp: %s (%s)\n", e.what(), e.status_str());
        return 1;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "embed_cpp: %s\n", e.what());
        return 1;
    }
    return 0;
}

/* The C API, translated to Zig by build.zig (b.addTranslateC, what @cImport was before
 * Zig 0.16). vtower.h is found through pkg-config (or -Dinclude-dir). */
#include <vtower.h>

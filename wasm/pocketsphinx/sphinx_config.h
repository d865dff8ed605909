/* sphinx_config.h for wasm32 (ILP32); replaces the tarball's, generated on an LP64 host. */
#define SIZEOF_LONG 4
#define HAVE_LONG_LONG 1
#define SIZEOF_LONG_LONG 8

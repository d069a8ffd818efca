/*
 * tinymalloc.h - the C API of tinymalloc, a general-purpose allocator.
 *
 * Two ways to use tinymalloc from C or C++:
 *
 *   1. Drop-in, no rebuild: preload the shared library and every malloc,
 *      free, calloc, realloc, posix_memalign, aligned_alloc, ..., and C++
 *      new/delete of the program goes to tinymalloc:
 *
 *          LD_PRELOAD=/usr/local/lib/libtinymalloc.so ./program
 *
 *   2. Link it: `cc prog.c $(pkg-config --cflags --libs tinymalloc)`, or
 *      `-ltinymalloc` for the shared library, or the static library
 *      `libtinymalloc.a` (add `pkg-config --static --libs tinymalloc`).
 *      The library exports the malloc family, so linking it also makes
 *      tinymalloc the program's malloc; in addition the functions below
 *      can be called by name. They never clash with the system's names.
 *
 * All functions are thread-safe. Every pointer returned is aligned to at
 * least 16 bytes. A pointer that tinymalloc did not return, or one already
 * freed, given to tinyfree/tinyrealloc/tinymalloc_usable_size (or free,
 * realloc, ...) is reported on stderr in one line
 * ("tinymalloc: double free in free(): address 0x...") and the process
 * aborts.
 */
#ifndef TINYMALLOC_H
#define TINYMALLOC_H

#include <stddef.h>

#define TINYMALLOC_VERSION_MAJOR 0
#define TINYMALLOC_VERSION_MINOR 1
#define TINYMALLOC_VERSION_PATCH 0
#define TINYMALLOC_VERSION "0.1.0"
/* The version as one number: major * 10000 + minor * 100 + patch. */
#define TINYMALLOC_VERSION_NUMBER                                       \
  (TINYMALLOC_VERSION_MAJOR * 10000 + TINYMALLOC_VERSION_MINOR * 100 + \
   TINYMALLOC_VERSION_PATCH)

#ifdef __cplusplus
extern "C" {
#endif

/* Allocates size bytes (aligned to 16). tinymalloc(0) returns a unique
 * pointer that must be freed like any other (it is not NULL). Returns NULL
 * with errno = ENOMEM when out of memory. */
void *tinymalloc(size_t size);

/* Frees a block returned by any tinymalloc function (or by malloc & co.
 * when tinymalloc is the program's malloc). NULL is ignored; errno is
 * preserved. */
void tinyfree(void *ptr);

/* Allocates n * size zeroed bytes. Returns NULL with errno = ENOMEM when
 * n * size overflows or when out of memory. */
void *tinycalloc(size_t n, size_t size);

/* Resizes ptr to size bytes, keeping the contents up to the smaller size;
 * tinyrealloc(NULL, size) is tinymalloc(size). Unlike glibc's realloc,
 * tinyrealloc(ptr, 0) returns a minimal unique block (ptr is released).
 * On failure returns NULL with errno = ENOMEM and ptr is left intact. */
void *tinyrealloc(void *ptr, size_t size);

/* Allocates size bytes aligned to alignment, which must be a power of two
 * (any size, up to what memory allows). Returns NULL with errno = EINVAL
 * for a bad alignment, NULL with errno = ENOMEM when out of memory.
 * The block is freed with tinyfree. */
void *tinymalloc_aligned(size_t alignment, size_t size);

/* The number of bytes usable in the block at ptr (at least the size asked
 * for); 0 for NULL. */
size_t tinymalloc_usable_size(void *ptr);

/* Returns free memory to the operating system now. Returns 1 if some
 * memory was released, 0 otherwise. */
int tinymalloc_trim(void);

/* Returns 1 if ptr is the start of a live block returned by tinymalloc,
 * 0 otherwise. Safe to call with any address (never aborts). */
int tinymalloc_owns(const void *ptr);

/* Prints a short summary of the allocator's memory use to stderr, as
 * malloc_stats() does. Does not allocate. */
void tinymalloc_print_stats(void);

/* The version of the library actually loaded, e.g. "0.1.0" (compare with
 * TINYMALLOC_VERSION, the version of this header). */
const char *tinymalloc_version(void);

#ifndef __cplusplus
/* C23 sized deallocation, also exported by the library (glibc 2.36 does
 * not declare them yet). size (and alignment) must be those the block was
 * allocated with; a size that cannot belong to the block aborts. Declared
 * for C only: a C++ <stdlib.h> that has them declares them noexcept. */
void free_sized(void *ptr, size_t size);
void free_aligned_sized(void *ptr, size_t alignment, size_t size);
#endif

#ifdef __cplusplus
}
#endif

#endif /* TINYMALLOC_H */

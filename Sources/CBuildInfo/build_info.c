#include "CBuildInfo.h"

/* vtd_build_commit.h is written by the Makefile's build-commit rule and is
 * not in git: a clone built with plain `swift build` has none, and says so.
 * C rather than Swift because only the preprocessor can make a file's
 * absence a default instead of a build error. */
#if __has_include("vtd_build_commit.h")
#include "vtd_build_commit.h"
#endif
#ifndef VTD_BUILD_COMMIT
#define VTD_BUILD_COMMIT "unknown"
#endif

const char *vtd_build_commit(void) { return VTD_BUILD_COMMIT; }

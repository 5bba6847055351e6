#ifndef CBUILDINFO_H
#define CBUILDINFO_H

/// The git commit the binaries were built from, as `git describe --always
/// --dirty --abbrev=12` printed it when `make` last ran (a "-dirty" suffix
/// when the tree had uncommitted changes), or "unknown" for a plain
/// `swift build` of a tree `make` never saw.
const char *vtd_build_commit(void);

#endif

// swift-tools-version:6.2
import PackageDescription

// Layout and the reason for each target: docs/ARCHITECTURE.md.
let package = Package(
    name: "vtd-bridge",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "vtdbridged", targets: ["vtdbridged"]),
        .executable(name: "vtdbridgectl", targets: ["vtdbridgectl"]),
        .executable(name: "vtdbridge-sim", targets: ["vtdbridge-sim"]),
        .library(name: "Bridge", targets: ["Bridge"]),
        .library(name: "VTd", targets: ["VTd"]),
        .library(name: "Wire", targets: ["Wire"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
    ],
    targets: [
        // C shim for the calls Swift cannot express, or not without reading
        // errno after the fact: SCM_RIGHTS (CMSG_* macros), Unix addresses,
        // SO_PEERCRED/SO_PEERGROUPS, memfd_create, mmap, signalfd, variadic
        // open/fcntl. Every function returns its result or -errno.
        .target(name: "CPosix"),
        // The one OS layer: the owned descriptor (closed exactly once, scoped
        // access), SystemError (errno + the call's name), the one EINTR retry,
        // files, memfd and mmap, Unix sockets, poll, signalfd.
        .target(name: "Posix", dependencies: ["CPosix"]),
        // C shim: the <linux/vfio.h> request numbers Swift cannot import, and
        // ioctl wrappers that return -errno.
        .target(name: "CVFIO"),
        // Containers, groups, devices and their errors: a thin layer over the
        // kernel, on Posix descriptors and errors. VTd for DMAPermission only:
        // MAP_DMA takes the same permission type the guest's tables produce.
        .target(name: "VFIO", dependencies: [
            "CVFIO", "CPosix", "Posix", "VTd",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Pure VT-d model: entries, the second-level walk, invalidation
        // descriptors; and DMAPermission, the one read/write type every layer
        // uses, down to VFIO's MAP_DMA flags. Depends on nothing.
        .target(name: "VTd"),
        // The guest side of VT-d: writes tables and invalidations the way a guest
        // driver does. Used by tests and by the simulator.
        .target(name: "VTdGuest", dependencies: ["VTd"]),
        // C: the SIGBUS handler that keeps a shrunk guest RAM file from
        // killing the daemon (docs/ARCHITECTURE.md, "Guest RAM that shrinks").
        .target(name: "CGuestRAMGuard"),
        // Guest RAM, address spaces, the shadow map, sync, and the backend seam.
        .target(name: "Bridge", dependencies: [
            "VTd", "VFIO", "JSON", "Posix", "CPosix", "CGuestRAMGuard",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Connections and listeners on Posix sockets: stale-socket
        // replacement, outbound queues, blocking conveniences, the poll set,
        // signals, sd_notify.
        .target(name: "UnixIO", dependencies: ["Posix"]),
        // JSON values, the one strict parser (with positions for files people
        // edit) and the serializer. No dependencies: the control codec, the
        // bridge's reports and the daemon's config and state all use it.
        .target(name: "JSON"),
        // Codecs for the event channel (binary) and the control socket (JSON
        // lines). No I/O: the frame decoder is generic over what a descriptor
        // is, so it never depends on Posix.
        .target(name: "Wire", dependencies: ["VTd", "JSON"]),
        // Blocking clients of both sockets, for the CLI, the simulator, tests,
        // and VMM authors writing Swift; and the number syntax the CLI's and
        // the simulator's options share.
        .target(name: "VTdBridgeClient", dependencies: ["Wire", "UnixIO", "Posix", "VTd"]),
        // C: the git commit the build came from, from a header the Makefile
        // writes (absent in a plain `swift build`: "unknown").
        .target(name: "CBuildInfo"),
        // The version and commit every executable's --version prints.
        .target(name: "VTdBuildInfo", dependencies: ["CBuildInfo"]),
        // The service: sockets, sessions, lifecycle, config, state.
        .target(name: "Daemon", dependencies: [
            "Bridge", "VFIO", "VTd", "JSON", "Wire", "UnixIO", "Posix",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
        ]),
        // A swift-log handler for the systemd journal: native-protocol
        // entries with the priority and each metadata key as a field, `<N>`
        // lines when the socket cannot take them. Only the daemon's
        // executable bootstraps it (docs/CONFIG.md, "Logging").
        .target(name: "JournalLogging", dependencies: [
            "Posix",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "vtdbridged", dependencies: [
            "Daemon", "VTdBuildInfo", "JournalLogging",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ], linkerSettings: [
            // The static stdlib's link arguments export every symbol of the
            // executable (-export-dynamic): ~121,000 .dynsym entries whose
            // hash table, symbols and names (0.8 MiB) the dynamic loader
            // reads at every start, since each libc/libstdc++ symbol lookup
            // searches the executable first. Nothing resolves a symbol of
            // ours at run time (no dlsym, no plugins; a crash backtrace
            // symbolizes from .symtab, which the build's copy keeps), so the
            // daemon exports none: −0.8…1.4 MiB idle RSS (issue 14).
            //
            // And packed relative relocations (DT_RELR, glibc ≥ 2.36, which
            // bookworm has; gold cannot write them, lld can): a static-pie
            // Swift binary has ~44,000 R_X86_64_RELATIVE relocations, 24
            // bytes each in .rela.dyn (1 MiB, all read at every start);
            // as RELR bitmaps they take 8 KiB. −1.1…1.6 MiB idle RSS.
            //
            // Release only: tests link this target's objects too.
            .unsafeFlags(["-use-ld=lld", "-Xlinker", "--no-export-dynamic", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs"],
                         .when(platforms: [.linux], configuration: .release)),
        ]),
        .executableTarget(name: "vtdbridgectl", dependencies: [
            "Bridge", "VTd", "JSON", "Wire", "UnixIO", "Posix", "VTdBridgeClient", "VTdBuildInfo",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // The benchmarks' reader of a process's memory (/proc), shared by the
        // host (vtdbridge-bench) and VM (vtdbridge-sim) footprint rows.
        .target(name: "ProcessMemory"),
        .executableTarget(name: "vtdbridge-sim", dependencies: [
            "Bridge", "VTd", "VTdGuest", "Wire", "UnixIO", "Posix", "VTdBridgeClient", "VFIO", "CPosix", "VTdBuildInfo", "ProcessMemory",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Histogram", package: "hdrhistogram-swift"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // make bench: the host figures (sync cost, memory, invalidation rate)
        // and the table that docs/BENCHMARKS.md is written from.
        .executableTarget(name: "vtdbridge-bench", dependencies: [
            "Bridge", "VTd", "VTdGuest", "ProcessMemory",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Test doubles live here and only here.
        .target(name: "VTdBridgeTestSupport", dependencies: ["Bridge", "VTd", "VTdGuest", "VFIO", "CVFIO", "UnixIO"]),

        .testTarget(name: "PosixTests", dependencies: ["Posix", "CPosix"]),
        .testTarget(name: "CVFIOTests", dependencies: ["CVFIO"]),
        .testTarget(name: "VFIOTests", dependencies: ["VFIO", "Posix", "VTd", "VTdBridgeTestSupport"]),
        .testTarget(name: "VTdTests", dependencies: ["VTd", "VTdGuest"]),
        .testTarget(name: "BridgeTests", dependencies: ["Bridge", "JSON", "VTd", "VTdGuest", "VTdBridgeTestSupport", "Posix"]),
        // The executables themselves too: the README test parses every example
        // with the commands' own parsers.
        .testTarget(name: "CLITests", dependencies: [
            "Bridge", "VTd", "VTdGuest", "VTdBridgeClient", "VTdBridgeTestSupport", "Wire", "UnixIO", "Posix", "JSON", "VTdBuildInfo",
            "vtdbridgectl", "vtdbridged", "vtdbridge-sim",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .testTarget(name: "JSONTests", dependencies: ["JSON"]),
        .testTarget(name: "WireTests", dependencies: ["Wire", "VTd", "VTdGuest"]),
        .testTarget(name: "UnixIOTests", dependencies: ["UnixIO", "Posix", "CPosix"]),
        .testTarget(name: "JournalLoggingTests", dependencies: [
            "JournalLogging", "Posix",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "DaemonTests", dependencies: [
            "Daemon", "Wire", "UnixIO", "Posix", "Bridge", "VTd", "VTdGuest", "VTdBridgeClient",
            "VFIO", "CVFIO", "VTdBridgeTestSupport",
            .product(name: "Logging", package: "swift-log"),
        ]),

        // Fuzzing (docs/RELIABILITY.md, "Fuzzing"): the harnesses and their
        // checks, one libFuzzer executable per target (a file replayer in a
        // normal build), and the XCTest replay of the committed corpora.
        .target(name: "VTdBridgeFuzzing", dependencies: [
            "Wire", "Bridge", "VTd", "VTdGuest", "VFIO",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "FuzzFrames", dependencies: ["VTdBridgeFuzzing"]),
        .executableTarget(name: "FuzzControl", dependencies: ["VTdBridgeFuzzing"]),
        .executableTarget(name: "FuzzSync", dependencies: ["VTdBridgeFuzzing"]),
        .executableTarget(name: "FuzzVFIOUser", dependencies: ["VTdBridgeFuzzing"]),
        .testTarget(name: "FuzzRegressionTests", dependencies: ["VTdBridgeFuzzing", "Bridge", "VTd", "VTdBridgeTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)

// Zero warnings, kept so: in every target of this package a compiler warning
// is an error, so no build (debug, release, tests, fuzz, sanitizers) can
// succeed with one, and an unchanged file was compiled warning-free when it
// was last compiled. Dependencies are not affected (SwiftPM applies warning
// settings to the root package only). The Makefile checks what is left: the
// linker's and SwiftPM's own warnings (scripts/no-warnings).
let cTargets: Set = ["CPosix", "CVFIO", "CGuestRAMGuard", "CBuildInfo"]
for target in package.targets {
    if cTargets.contains(target.name) {
        target.cSettings = (target.cSettings ?? []) + [.treatAllWarnings(as: .error)]
    } else {
        target.swiftSettings = (target.swiftSettings ?? []) + [.treatAllWarnings(as: .error)]
    }
}

// The modules on the path of a guest's invalidation skip Swift's dynamic
// exclusivity checks in release builds: ~50 swift_beginAccess calls per
// request, each a lookup in a thread-local access set, were 7K of the 26K
// instructions of a one-page INVALIDATE (issue 14, callgrind). The daemon's
// loop is one thread, and the compile-time checks stay. Debug builds keep
// the dynamic ones: the unit tests, the protocol suite (it runs the debug
// vtdbridged) and make check's ASan/TSan builds, so a violation on any path
// they drive still traps in a test.
let hotPath: Set = ["Posix", "UnixIO", "Wire", "VTd", "VFIO", "Bridge", "Daemon", "vtdbridged"]
for target in package.targets where hotPath.contains(target.name) {
    target.swiftSettings = (target.swiftSettings ?? []) + [
        .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
    ]
}

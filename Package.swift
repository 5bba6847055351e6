// swift-tools-version:6.0
import PackageDescription

// Layout and the reason for each target: docs/ARCHITECTURE.md.
let package = Package(
    name: "vtd-bridge",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "vtdbridgectl", targets: ["vtdbridgectl"]),
        .library(name: "Bridge", targets: ["Bridge"]),
        .library(name: "VTd", targets: ["VTd"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // C shim: the <linux/vfio.h> request numbers Swift cannot import, and
        // ioctl wrappers that return -errno.
        .target(name: "CVFIO"),
        // Containers, groups, devices and their errors: a thin layer over the kernel.
        .target(name: "VFIO", dependencies: [
            "CVFIO",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Pure VT-d model: entries, the second-level walk, invalidation descriptors.
        .target(name: "VTd"),
        // The guest side of VT-d: writes tables and invalidations the way a guest
        // driver does. Used by tests and by the simulator.
        .target(name: "VTdGuest", dependencies: ["VTd"]),
        // Guest RAM, address spaces, the shadow map, sync, and the backend seam.
        .target(name: "Bridge", dependencies: [
            "VTd", "VFIO",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "vtdbridgectl", dependencies: [
            "Bridge", "VTd",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // Test doubles live here and only here.
        .target(name: "VTdBridgeTestSupport", dependencies: ["Bridge", "VTd", "VTdGuest"]),

        .testTarget(name: "CVFIOTests", dependencies: ["CVFIO"]),
        .testTarget(name: "VFIOTests", dependencies: ["VFIO"]),
        .testTarget(name: "VTdTests", dependencies: ["VTd", "VTdGuest", "Bridge", "VTdBridgeTestSupport"]),
        .testTarget(name: "BridgeTests", dependencies: ["Bridge", "VTd", "VTdGuest", "VTdBridgeTestSupport"]),
        .testTarget(name: "CLITests", dependencies: ["Bridge", "VTd", "VTdGuest", "VTdBridgeTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)

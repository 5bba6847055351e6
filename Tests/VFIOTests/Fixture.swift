import CVFIO
import Logging
import Synchronization
import VFIO
import VTdBridgeTestSupport
import XCTest

/// A fake host with one container node, IOMMU group 12 holding 0000:01:00.0
/// (bound to vfio-pci), and the sysfs links that lead to it.
struct Fixture {
    let kernel = FakeKernel()
    /// Groups handed out by readyContainer, kept open for the test's length:
    /// dropping the last group would release the container's IOMMU.
    private let openGroups = GroupKeeper()
    let paths = VFIOPaths(deviceDirectory: "/fake/dev/vfio", sysfs: "/fake/sys")
    let logger = Logger(label: "vfio-tests")
    static let device = "0000:01:00.0"

    init() {
        kernel.addAssignableDevice(Self.device, group: 12, paths: paths)
    }

    func openContainer() throws -> Container {
        try Container.open(paths: paths, kernel: kernel, logger: logger)
    }

    func openGroup() throws -> Group {
        try Group.open(number: 12, paths: paths, kernel: kernel, logger: logger)
    }

    /// A container with group 12 attached and its IOMMU model set.
    func readyContainer() throws -> (Container, Group) {
        let container = try openContainer()
        let group = try openGroup()
        try container.attach(group)
        openGroups.groups.withLock { $0.append(group) }
        return (container, group)
    }

    func count(_ request: UInt) -> Int {
        kernel.with { $0.requests.filter { $0 == request }.count }
    }
}

final class GroupKeeper: Sendable {
    let groups = Mutex<[Group]>([])
}

/// Runs `body`, expecting a VFIOError, and returns it.
func expectError<T>(_ body: () throws -> T, file: StaticString = #filePath, line: UInt = #line) -> VFIOError? {
    do {
        let value = try body()
        XCTFail("expected a VFIOError, got \(value)", file: file, line: line)
    } catch let error as VFIOError {
        return error
    } catch {
        XCTFail("expected a VFIOError, got \(error)", file: file, line: line)
    }
    return nil
}

func XCTAssertContains(_ text: String?, _ fragment: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertTrue(text?.contains(fragment) == true, "'\(text ?? "nil")' does not contain '\(fragment)'",
                  file: file, line: line)
}

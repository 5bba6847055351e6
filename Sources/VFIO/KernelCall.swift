import Glibc
import Posix

// How the VFIO layer makes kernel calls: through its injectable
// `VFIOKernel`, on Posix's owned descriptors, with Posix's one EINTR retry,
// and with failures turned into a `VFIOError` that adds a hint.

extension FileDescriptor {
    /// Opens `path` through `kernel` (O_CLOEXEC is always added: a VFIO
    /// descriptor leaked into a child would keep the group or container busy
    /// after we exit). The result is closed through `kernel` too, so a fake
    /// kernel sees the close of each number it handed out.
    ///
    /// - Parameters:
    ///   - subject: what later calls on the descriptor name in their errors
    ///     ("group 12"); the open's own error names `path`.
    ///   - hint: explains the errno of a failed open for this kind of file.
    public static func open(
        _ path: String, flags: Int32 = O_RDWR, kernel: any VFIOKernel, subject: String? = nil,
        hint: (Int32) -> String? = { _ in nil }
    ) throws(VFIOError) -> FileDescriptor {
        let fd = try kernelCall("open", subject: path, hint: hint) { kernel.open(path, flags: flags | O_CLOEXEC) }
        return FileDescriptor(adopting: fd, kernel: kernel, subject: subject ?? path)
    }

    /// Takes ownership of a number `kernel` handed out (open, or
    /// VFIO_GROUP_GET_DEVICE_FD); it is closed through `kernel`.
    public convenience init(adopting fd: Int32, kernel: any VFIOKernel, subject: String) {
        self.init(adopting: fd, subject: subject, close: { kernel.close($0) })
    }

    /// One VFIO call on this descriptor (`call`): EINTR retried, the failure
    /// a `VFIOError` naming `operation`, this descriptor's subject, `detail`,
    /// and what `hint` says of the errno.
    @discardableResult
    func vfio<T: FixedWidthInteger & SignedInteger>(
        _ operation: String,
        detail: @autoclosure () -> String? = nil,
        hint: (Int32) -> String? = { _ in nil },
        _ body: (Int32) -> T
    ) throws(VFIOError) -> T {
        do {
            return try call(operation, detail: detail(), body)
        } catch {
            throw VFIOError(error, hint: hint(error.errno))
        }
    }
}

/// A kernel call that is not on a descriptor we own (open, readlink,
/// opendir): EINTR retried, the failure a `VFIOError` with a hint.
@discardableResult
func kernelCall<T: FixedWidthInteger & SignedInteger>(
    _ operation: String,
    subject: @autoclosure () -> String,
    detail: @autoclosure () -> String? = nil,
    hint: (Int32) -> String? = { _ in nil },
    _ body: () -> T
) throws(VFIOError) -> T {
    do {
        return try systemCall(operation, subject: subject(), detail: detail(), body)
    } catch {
        throw VFIOError(error, hint: hint(error.errno))
    }
}

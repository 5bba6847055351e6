import Foundation
import Glibc

/// A tiny LD_PRELOAD library, compiled at bench time, that counts a
/// process's heap allocation calls (malloc, calloc, realloc, posix_memalign,
/// aligned_alloc, memalign). The counts live in a shared file mapping named
/// by VTD_ALLOC_COUNT_FILE, so they can be read at any moment from outside,
/// before and after a stream, and survive however the process ends.
///
/// It works on vtdbridged because the binary is a static-pie that links the
/// Swift runtime statically but libc dynamically: the runtime's malloc calls
/// go through the PLT to the first definition in the lookup scope, and a
/// preloaded library comes before libc there. `verify` checks it on the
/// binary instead of trusting that.
struct AllocationCounter {
    /// The slots of the count file, in the order the shim writes them.
    static let functions = ["malloc", "calloc", "realloc", "posix_memalign", "aligned_alloc", "memalign"]

    // The shim calls glibc's own entry points (exported as __libc_malloc and
    // friends) rather than dlsym(RTLD_NEXT): dlsym may allocate, and would
    // then recurse into the shim before it knows where to go.
    static let source = """
        #include <errno.h>
        #include <fcntl.h>
        #include <stddef.h>
        #include <stdlib.h>
        #include <sys/mman.h>
        #include <unistd.h>

        extern void *__libc_malloc(size_t);
        extern void *__libc_calloc(size_t, size_t);
        extern void *__libc_realloc(void *, size_t);
        extern void *__libc_memalign(size_t, size_t);

        static unsigned long early[8];
        static unsigned long *counts = early;

        __attribute__((constructor)) static void open_counts(void) {
            const char *path = getenv("VTD_ALLOC_COUNT_FILE");
            if (path == NULL) return;
            int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
            if (fd < 0) return;
            if (ftruncate(fd, 4096) == 0) {
                void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
                if (page != MAP_FAILED) counts = page;
            }
            close(fd);
        }

        #define COUNT(slot) __atomic_fetch_add(&counts[slot], 1, __ATOMIC_RELAXED)

        void *malloc(size_t size) { COUNT(0); return __libc_malloc(size); }
        void *calloc(size_t n, size_t size) { COUNT(1); return __libc_calloc(n, size); }
        void *realloc(void *old, size_t size) { COUNT(2); return __libc_realloc(old, size); }
        int posix_memalign(void **out, size_t alignment, size_t size) {
            COUNT(3);
            if (alignment < sizeof(void *) || (alignment & (alignment - 1)) != 0) return EINVAL;
            void *p = __libc_memalign(alignment, size);
            if (p == NULL) return ENOMEM;
            *out = p;
            return 0;
        }
        void *aligned_alloc(size_t alignment, size_t size) { COUNT(4); return __libc_memalign(alignment, size); }
        void *memalign(size_t alignment, size_t size) { COUNT(5); return __libc_memalign(alignment, size); }

        """

    let library: String

    /// Compiles the shim into `directory` with the first C compiler found
    /// (cc, then the Swift toolchain's clang).
    static func build(into directory: String) throws -> AllocationCounter {
        let sourcePath = directory + "/alloc-count.c"
        let library = directory + "/alloc-count.so"
        try source.write(toFile: sourcePath, atomically: true, encoding: .utf8)
        var failures: [String] = []
        for compiler in ["cc", "clang"] {
            do {
                try FootprintBench.runToEnd("/usr/bin/env", [compiler, "-O2", "-shared", "-fPIC", "-o", library, sourcePath])
                return AllocationCounter(library: library)
            } catch {
                failures.append("\(compiler): \(error)")
            }
        }
        throw BenchError("cannot compile the allocation counter: " + failures.joined(separator: "; "))
    }

    /// What a process needs in its environment to be counted into `file`.
    func environment(_ file: String) -> [String: String] {
        ["LD_PRELOAD": library, "VTD_ALLOC_COUNT_FILE": file]
    }

    /// The counts in `file` now, one per entry of `functions`.
    static func read(_ file: String) throws -> [Int] {
        let fd = open(file, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw BenchError("cannot open the allocation count file \(file): errno \(errno)") }
        defer { close(fd) }
        var words = [UInt64](repeating: 0, count: functions.count)
        let size = words.count * 8
        let got = words.withUnsafeMutableBytes { pread(fd, $0.baseAddress, size, 0) }
        guard got == size else { throw BenchError("the allocation count file \(file) has \(got) bytes, not \(size)") }
        return words.map { Int($0) }
    }
}

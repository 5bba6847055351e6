/// A mapping that can live in an `IOVAOrderedMap`: it covers [iova, end),
/// and no two in one map overlap.
public protocol IOVAOrderedEntry: Sendable, Equatable {
    var iova: UInt64 { get }
    var size: UInt64 { get }
    var end: UInt64 { get }
}

/// The exact record of what the kernel has mapped for one address space,
/// ordered by IOVA.
public typealias ShadowMap = IOVAOrderedMap<ShadowEntry>

/// Mappings ordered by IOVA: the shadow (`ShadowMap`), and in notifier mode
/// what the VMM notified (`NotifiedMap`).
///
/// It is a two-level sorted array (a B-tree of height two): chunks of up to
/// `chunkCapacity` entries, each sorted, the chunks in order. Lookups and
/// edits cost a binary search plus a memmove inside one chunk, so a
/// page-selective invalidation costs the same in a space of a thousand or a
/// million mappings, while a full sync reads the entries in order, which lets
/// it merge with the in-order table walk instead of hashing every leaf.
/// Entries are stored inline (a shadow entry is 24 bytes), with no
/// per-entry allocation.
public struct IOVAOrderedMap<Entry: IOVAOrderedEntry>: Sendable {
    /// 128 entries (3 KiB of shadow entries): an edit's memmove is at most
    /// that. With 512, a guest unmapping in IOVA order moved 12 KiB per
    /// unmap, 3.7K of the 26K instructions of a one-page INVALIDATE (issue
    /// 14); the chunk headers cost 0.4 B per mapping instead of 0.1.
    public static var chunkCapacity: Int { 128 }

    @usableFromInline var chunks: [ContiguousArray<Entry>] = []
    /// The last chunk emptied, kept (empty, its storage allocated) for the
    /// next chunk needed: a single mapping made and removed over and over in
    /// an otherwise empty space (a vfio-user client's DMA_MAP/DMA_UNMAP)
    /// would otherwise allocate and free a whole chunk each time (issue 14).
    private var spare = ContiguousArray<Entry>()
    public private(set) var count = 0
    public private(set) var mappedBytes: UInt64 = 0

    public init() {}

    /// A position in the map: chunk and offset inside it.
    public struct Index: Comparable, Sendable {
        @usableFromInline var chunk: Int
        @usableFromInline var offset: Int
        @inlinable init(chunk: Int, offset: Int) {
            self.chunk = chunk
            self.offset = offset
        }
        public static func < (a: Index, b: Index) -> Bool {
            (a.chunk, a.offset) < (b.chunk, b.offset)
        }
    }

    public var isEmpty: Bool { count == 0 }
    @inlinable public var endIndex: Index { Index(chunk: chunks.count, offset: 0) }

    @inlinable
    public subscript(i: Index) -> Entry { chunks[i.chunk][i.offset] }

    @inlinable
    public func index(after i: Index) -> Index {
        i.offset + 1 < chunks[i.chunk].count ? Index(chunk: i.chunk, offset: i.offset + 1)
                                             : Index(chunk: i.chunk + 1, offset: 0)
    }

    /// The first entry whose end lies above `iova`: the entry containing
    /// `iova`, or else the first one after it. Entries never overlap, so ends
    /// are sorted like starts.
    @inlinable
    public func firstIndex(endingAfter iova: UInt64) -> Index {
        var lo = 0, hi = chunks.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if chunks[mid][chunks[mid].count - 1].end > iova { hi = mid } else { lo = mid + 1 }
        }
        guard lo < chunks.count else { return endIndex }
        let chunk = chunks[lo]
        var a = 0, b = chunk.count
        while a < b {
            let mid = (a + b) / 2
            if chunk[mid].end > iova { b = mid } else { a = mid + 1 }
        }
        return Index(chunk: lo, offset: a)
    }

    /// The entry containing `iova`, if any.
    public func entry(containing iova: UInt64) -> Entry? {
        let i = firstIndex(endingAfter: iova)
        guard i < endIndex, self[i].iova <= iova else { return nil }
        return self[i]
    }

    /// True when some entry overlaps [iova, end).
    public func overlaps(iova: UInt64, end: UInt64) -> Bool {
        let i = firstIndex(endingAfter: iova)
        return i < endIndex && self[i].iova < end
    }

    /// Adds an entry. It must not overlap an existing one (the caller unmaps first).
    public mutating func insert(_ entry: Entry) {
        // The caller has checked (AddressSpace.apply refuses an overlapping
        // map before the kernel sees it); in debug builds, check again.
        assert(!overlaps(iova: entry.iova, end: entry.end), "shadow entries never overlap")
        count += 1
        mappedBytes += entry.size
        guard !chunks.isEmpty else {
            let chunk = newChunk(entry)
            chunks.append(chunk)
            return
        }
        // The chunk to hold it: the last one whose first entry starts below it.
        var lo = 0, hi = chunks.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if chunks[mid][0].iova < entry.iova { lo = mid + 1 } else { hi = mid }
        }
        let c = max(lo - 1, 0)
        var a = 0, b = chunks[c].count
        while a < b {
            let mid = (a + b) / 2
            if chunks[c][mid].iova < entry.iova { a = mid + 1 } else { b = mid }
        }
        if chunks[c].count < Self.chunkCapacity {
            chunks[c].insert(entry, at: a)
            return
        }
        if c == chunks.count - 1 && a == chunks[c].count {
            // Appending in order (a full sync): start a new chunk and leave
            // this one full, so a space built in order is packed densely.
            let chunk = newChunk(entry)
            chunks.append(chunk)
            return
        }
        // Split the full chunk in half, then insert into the proper half.
        var right = ContiguousArray<Entry>()
        right.reserveCapacity(Self.chunkCapacity)
        right.append(contentsOf: chunks[c][(Self.chunkCapacity / 2)...])
        chunks[c].removeSubrange((Self.chunkCapacity / 2)...)
        chunks.insert(right, at: c + 1)
        if a <= Self.chunkCapacity / 2 {
            chunks[c].insert(entry, at: a)
        } else {
            chunks[c + 1].insert(entry, at: a - Self.chunkCapacity / 2)
        }
    }

    /// Removes the entry starting exactly at `iova`; returns it.
    @discardableResult
    public mutating func remove(iova: UInt64) -> Entry? {
        let i = firstIndex(endingAfter: iova)
        guard i < endIndex, self[i].iova == iova else { return nil }
        let e = chunks[i.chunk].remove(at: i.offset)
        if chunks[i.chunk].isEmpty {
            var emptied = chunks.remove(at: i.chunk)
            if spare.capacity == 0 { swap(&spare, &emptied) }
        }
        count -= 1
        mappedBytes -= e.size
        return e
    }

    public mutating func removeAll() {
        chunks.removeAll()
        spare = []
        count = 0
        mappedBytes = 0
    }

    /// Calls `body` on every entry in IOVA order.
    @inlinable
    public func forEach(_ body: (Entry) throws -> Void) rethrows {
        for chunk in chunks { for e in chunk { try body(e) } }
    }

    /// A read-only cursor over the entries in IOVA order, from the first
    /// entry ending above `iova`. It holds its own reference to the chunk it
    /// is in, so stepping through a chunk costs an index increment and no
    /// reference counting: the merge of a replay touches a million entries.
    public func cursor(endingAfter iova: UInt64) -> Cursor {
        let start = firstIndex(endingAfter: iova)
        return Cursor(chunks: chunks, chunkIndex: start.chunk, offset: start.offset)
    }

    public struct Cursor {
        @usableFromInline let chunks: [ContiguousArray<Entry>]
        @usableFromInline var chunkIndex: Int
        @usableFromInline var offset: Int
        @usableFromInline var chunk: ContiguousArray<Entry>

        /// A cursor over nothing.
        public static var empty: Cursor { Cursor(chunks: [], chunkIndex: 0, offset: 0) }

        @usableFromInline init(chunks: [ContiguousArray<Entry>], chunkIndex: Int, offset: Int) {
            self.chunks = chunks
            self.chunkIndex = chunkIndex
            self.offset = offset
            chunk = chunkIndex < chunks.count ? chunks[chunkIndex] : []
        }

        /// The entry under the cursor, nil past the end.
        @inlinable public var current: Entry? {
            offset < chunk.count ? chunk[offset] : nil
        }

        /// Hands `body` the entries from the cursor to the end of its chunk,
        /// and whether this chunk is the last; moves the cursor past as many
        /// entries as `body` returns. For loops that compare a run of
        /// entries with plain loads (the replay's level-1 fast path).
        @inlinable
        public mutating func consume(_ body: (UnsafeBufferPointer<Entry>, Bool) -> Int) {
            let isLast = chunkIndex + 1 >= chunks.count
            let start = offset
            let n = chunk.withUnsafeBufferPointer { all in
                body(UnsafeBufferPointer(rebasing: all[min(start, all.count)...]), isLast)
            }
            offset += n
            if offset >= chunk.count, chunkIndex + 1 < chunks.count {
                chunkIndex += 1
                offset = 0
                chunk = chunks[chunkIndex]
            }
        }

        @inlinable public mutating func advance() {
            offset += 1
            if offset >= chunk.count, chunkIndex + 1 < chunks.count {
                chunkIndex += 1
                offset = 0
                chunk = chunks[chunkIndex]
            }
        }
    }

    /// Bytes the map holds on the heap: each chunk's capacity of entries
    /// plus its array header, and the array of chunks.
    public var allocatedBytes: Int {
        let header = 32
        let held = spare.capacity > 0 ? header + spare.capacity * MemoryLayout<Entry>.stride : 0
        return chunks.reduce(header + chunks.capacity * 8 + held) { $0 + header + $1.capacity * MemoryLayout<Entry>.stride }
    }

    /// All entries in IOVA order (for reports and tests).
    public var entries: [Entry] {
        var all: [Entry] = []
        all.reserveCapacity(count)
        forEach { all.append($0) }
        return all
    }

    private mutating func newChunk(_ first: Entry) -> ContiguousArray<Entry> {
        var chunk = ContiguousArray<Entry>()
        swap(&chunk, &spare)
        chunk.reserveCapacity(Self.chunkCapacity)
        chunk.append(first)
        return chunk
    }
}

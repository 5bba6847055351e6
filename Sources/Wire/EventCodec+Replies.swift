extension EventCodec {
    /// Which body a reply carries (PROTOCOL.md §1.4): decided by the request
    /// type and the status, never by the sender's choice, so that both ends
    /// agree on the layout.
    enum BodyKind: Equatable {
        case none, hello, batch

        init(requestType: UInt32, status: EventStatus) {
            switch EventType(rawValue: requestType) {
            case .hello where status == .ok: self = .hello
            case .invalidate, .notify: self = .batch
            default: self = .none
            }
        }
    }

    // MARK: - Encoding (daemon side)

    /// The reply frame to a request of raw type `requestType` with `tag`
    /// (PROTOCOL.md §1.2, §1.4, §1.6).
    ///
    /// The reply's type is `requestType | 0x8000_0000`, also for unknown types.
    /// The body written follows §1.4 whatever `reply.body` holds: `HELLO` with
    /// status 0 gets the hello body (defaults if none was given), `INVALIDATE`
    /// and `NOTIFY` always get a batch result (`BatchResultBody.empty` if none
    /// was given), every other reply gets none.
    ///
    /// Limits are enforced here so no caller can exceed them: the message is
    /// cut to 4096 bytes and reasons to 1024 at a UTF-8 scalar boundary; at
    /// most 64 failure records are sent and the message then says how many
    /// there were; a batch with failures and status `OK` is sent as `PARTIAL`
    /// (§1.6 "When failure_count > 0 the status is PARTIAL").
    public static func encodeReply(requestType: UInt32, tag: UInt64, _ reply: EventReply) -> [UInt8] {
        var frame: [UInt8] = []
        encodeReply(requestType: requestType, tag: tag, reply, appendingTo: &frame)
        return frame
    }

    /// `encodeReply`, appending the frame to `frame`: the daemon encodes every
    /// reply of a read into one buffer it keeps, and sends it with one
    /// sendmsg, so a steady stream of requests allocates nothing for replies
    /// (issue 14).
    public static func encodeReply(requestType: UInt32, tag: UInt64, _ reply: EventReply, appendingTo frame: inout [UInt8]) {
        var status = reply.status
        var message = reply.message
        var note = ""
        var batch = BatchResultBody.empty
        let kind = BodyKind(requestType: requestType, status: status)
        if kind == .batch {
            if case .batch(let given) = reply.body { batch = given }
            let total = batch.failures.count
            if total > 0, status == .ok {
                status = .partial
                if message.isEmpty {
                    message = "\(total) kernel operation\(total == 1 ? "" : "s") failed; see the failure records, and `status` on the control socket; a replay retries them"
                }
            }
            if total > EventLimits.maxFailureRecords {
                batch.failures.removeLast(total - EventLimits.maxFailureRecords)
                note = " (\(total) operations failed; the first \(EventLimits.maxFailureRecords) are listed)"
            }
        }

        if kind == .batch, batch.failures.isEmpty, message.isEmpty, note.isEmpty {
            appendPlainBatchReply(requestType: requestType, tag: tag, status: status, batch, to: &frame)
            return
        }
        // The header goes first with a zero length, patched once the payload
        // is known: no separate payload array.
        let start = frame.count
        FrameHeader(type: EventType.replyType(for: requestType), length: 0, tag: tag).encode(into: &frame)
        frame.appendLittleEndian(status.rawValue)
        if message.isEmpty && note.isEmpty {
            // The common reply (OK, no text): nothing to cut, no copy.
            frame.appendLittleEndian(UInt32(0))
        } else {
            var messageBytes = UTF8Text.truncatedBytes(message, limit: EventLimits.maxMessageBytes - note.utf8.count)
            messageBytes.append(contentsOf: note.utf8)
            frame.appendLittleEndian(UInt32(messageBytes.count))
            frame.append(contentsOf: messageBytes)
        }

        switch kind {
        case .none:
            break
        case .hello:
            var body = (EventLimits.protocolVersion, UInt32(EventLimits.maxPayload), UInt32(0))
            if case .hello(let version, let maxPayload, let devices) = reply.body { body = (version, maxPayload, devices) }
            frame.appendLittleEndian(body.0)
            frame.appendLittleEndian(body.1)
            frame.appendLittleEndian(body.2)
        case .batch:
            frame.appendLittleEndian(batch.waits)
            frame.appendLittleEndian(batch.rejectedIndex)
            frame.appendLittleEndian(batch.maps)
            frame.appendLittleEndian(batch.unmaps)
            frame.appendLittleEndian(batch.faults)
            frame.appendLittleEndian(UInt32(batch.failures.count))
            for record in batch.failures {
                let reason = UTF8Text.truncatedBytes(record.reason, limit: EventLimits.maxReasonBytes)
                frame.appendLittleEndian(record.sourceID)
                frame.append(record.operation)
                frame.append(0)
                frame.appendLittleEndian(record.errno)
                frame.appendLittleEndian(record.iova)
                frame.appendLittleEndian(record.size)
                frame.appendLittleEndian(UInt32(reason.count))
                frame.appendZeros(4)
                frame.append(contentsOf: reason)
            }
        }
        // §1.2: the length counts the payload, not the 16-byte header.
        let length = UInt32(truncatingIfNeeded: frame.count - start - FrameHeader.size)
        frame.withUnsafeMutableBytes { $0.storeBytes(of: length.littleEndian, toByteOffset: start + 4, as: UInt32.self) }
    }

    /// The reply to almost every INVALIDATE and NOTIFY (a batch result with
    /// no message and no failure record, §1.4): its 48 bytes are stored in
    /// place and appended at once. Field by field, eleven appends cost 1.4K
    /// of the daemon's 19K instructions per one-page INVALIDATE (issue 14).
    private static func appendPlainBatchReply(requestType: UInt32, tag: UInt64, status: EventStatus,
                                              _ batch: BatchResultBody, to frame: inout [UInt8]) {
        let size = FrameHeader.size + 32
        withUnsafeTemporaryAllocation(byteCount: size, alignment: 8) { b in
            func put<T: FixedWidthInteger>(_ value: T, _ offset: Int) {
                b.storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
            }
            put(EventType.replyType(for: requestType), 0)
            put(UInt32(size - FrameHeader.size), 4)
            put(tag, 8)
            put(status.rawValue, 16)
            put(UInt32(0), 20)          // message_length
            put(batch.waits, 24)
            put(batch.rejectedIndex, 28)
            put(batch.maps, 32)
            put(batch.unmaps, 36)
            put(batch.faults, 40)
            put(UInt32(0), 44)          // failure records
            frame.append(contentsOf: UnsafeRawBufferPointer(b))
        }
    }

    /// The reply frame for `error`, which `decodeRequest` or `FrameDecoder`
    /// produced for a request of raw type `requestType`.
    public static func encodeReply(requestType: UInt32, tag: UInt64, error: WireError) -> [UInt8] {
        encodeReply(requestType: requestType, tag: tag, error.reply)
    }

    // MARK: - Decoding (client side)

    /// Decodes a reply payload to a request of raw type `requestType`, the
    /// type as the request was sent (the reply's type is that with bit 31
    /// set; a request type that had bit 31 set itself was unknown). Strict:
    /// the status must be a known code, the message valid UTF-8 within 4096
    /// bytes, the body exactly the one §1.4 prescribes, records within their
    /// limits with reserved fields 0, and no byte may be left over.
    public static func decodeReply(requestType: UInt32, payload: UnsafeRawBufferPointer) -> Result<EventReply, WireError> {
        let r = LittleEndianReader(payload)
        let what = "reply to \(EventType.describe(requestType))"
        func refuse(_ why: String) -> Result<EventReply, WireError> {
            .failure(.malformed("\(what): \(why) (PROTOCOL.md §1.4, §1.6)"))
        }
        guard r.count >= 8 else { return refuse("payload is \(r.count) bytes, shorter than its 8-byte status and message_length") }
        let rawStatus = r.u32(0)
        guard let status = EventStatus(rawValue: rawStatus) else { return refuse("status \(rawStatus) at offset 0 is not a code of §1.7") }
        let messageLength = Int(r.u32(4))
        guard messageLength <= EventLimits.maxMessageBytes else {
            return refuse("message_length \(messageLength) at offset 4 is above the limit of \(EventLimits.maxMessageBytes)")
        }
        guard 8 + messageLength <= r.count else {
            return refuse("message_length \(messageLength) runs past the end of the \(r.count)-byte payload")
        }
        guard let message = UTF8Text.decode(r.slice(8, messageLength)) else {
            return refuse("message at offset 8 is not valid UTF-8")
        }
        var at = 8 + messageLength
        let body: ReplyBody
        switch BodyKind(requestType: requestType, status: status) {
        case .none:
            body = .none
        case .hello:
            guard r.count - at == 12 else { return refuse("HELLO body at offset \(at) is \(r.count - at) bytes; it must be exactly 12") }
            body = .hello(version: r.u32(at), maxPayload: r.u32(at + 4), devices: r.u32(at + 8))
            at += 12
        case .batch:
            guard r.count - at >= BatchResultBody.fixedWireSize else {
                return refuse("batch result at offset \(at) is \(r.count - at) bytes, shorter than its 24-byte fixed part")
            }
            var result = BatchResultBody(waits: r.u32(at), rejectedIndex: r.i32(at + 4), maps: r.u32(at + 8),
                                         unmaps: r.u32(at + 12), faults: r.u32(at + 16))
            guard result.rejectedIndex >= -1 else { return refuse("rejected_index \(result.rejectedIndex) at offset \(at + 4) is below -1") }
            let failureCount = Int(r.u32(at + 20))
            guard failureCount <= EventLimits.maxFailureRecords else {
                return refuse("failure_count \(failureCount) at offset \(at + 20) is above the limit of \(EventLimits.maxFailureRecords)")
            }
            guard failureCount == 0 || status != .ok else {
                return refuse("failure_count is \(failureCount) but status is OK; failures make the status PARTIAL")
            }
            at += BatchResultBody.fixedWireSize
            result.failures.reserveCapacity(failureCount)
            for i in 0 ..< failureCount {
                let start = at
                guard r.count - at >= FailureRecord.fixedWireSize else {
                    return refuse("failure record \(i) at offset \(start) is cut short: \(r.count - at) bytes left, 32 needed")
                }
                let operation = r.u8(at + 2)
                guard FailureRecord.Operation(rawValue: operation) != nil else {
                    return refuse("failure record \(i) at offset \(start) has operation \(operation); it must be 1 (map), 2 (unmap) or 3 (unmap-all)")
                }
                guard r.u8(at + 3) == 0, r.u32(at + 28) == 0 else {
                    return refuse("failure record \(i) at offset \(start) has a reserved field (offset 3 or 28) not 0")
                }
                let reasonLength = Int(r.u32(at + 24))
                guard reasonLength <= EventLimits.maxReasonBytes else {
                    return refuse("failure record \(i) at offset \(start) has reason_length \(reasonLength), above the limit of \(EventLimits.maxReasonBytes)")
                }
                guard r.count - at - FailureRecord.fixedWireSize >= reasonLength else {
                    return refuse("failure record \(i) at offset \(start): reason_length \(reasonLength) runs past the end of the payload")
                }
                guard let reason = UTF8Text.decode(r.slice(at + FailureRecord.fixedWireSize, reasonLength)) else {
                    return refuse("failure record \(i) at offset \(start): reason is not valid UTF-8")
                }
                result.failures.append(FailureRecord(sourceID: r.u16(at), operation: operation, errno: r.i32(at + 4),
                                                     iova: r.u64(at + 8), size: r.u64(at + 16), reason: reason))
                at += FailureRecord.fixedWireSize + reasonLength
            }
            body = .batch(result)
        }
        guard at == r.count else { return refuse("\(r.count - at) unexpected bytes after offset \(at)") }
        return .success(EventReply(status: status, message: message, body: body))
    }

    /// `decodeReply` over an array.
    public static func decodeReply(requestType: UInt32, payload: [UInt8]) -> Result<EventReply, WireError> {
        payload.withUnsafeBytes { decodeReply(requestType: requestType, payload: $0) }
    }
}

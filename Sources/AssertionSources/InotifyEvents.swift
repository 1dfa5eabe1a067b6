import Glibc

/// Reading a non-blocking inotify descriptor: every queued event, with its name, until
/// the queue is empty. Shared by the file and the pods-directory watchers.
enum InotifyEvents {
    static func drain(_ descriptor: Int32, _ handle: (inotify_event, String) -> Void) {
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { return }
            var offset = 0
            let header = MemoryLayout<inotify_event>.size
            while offset + header <= count {
                let (event, name) = buffer.withUnsafeBytes { raw -> (inotify_event, String) in
                    let event = raw.loadUnaligned(fromByteOffset: offset, as: inotify_event.self)
                    let bytes = raw[(offset + header)..<(offset + header + Int(event.len))]
                    return (event, String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self))
                }
                offset += header + Int(event.len)
                handle(event, name)
            }
        }
    }
}

/// Stops reading from a client that sends faster than it reads its answers.
///
/// Without it, a client writing requests and never reading would make the daemon
/// queue answers (about 1.4 KiB per token) without bound. Reading pauses while the
/// socket is not writable or too many answers are pending, and resumes once the
/// client has caught up; the kernel's buffers then push back on the client.
struct ReadGate {
    /// Answers pending on one connection before reading pauses.
    static let maximumPending = 256
    private var paused = false

    mutating func update(_ connection: any ConnectionIO, pending: Int) {
        let writable = connection.isWritable
        if !paused, pending >= Self.maximumPending || !writable {
            paused = true
            connection.setReading(false)
        } else if paused, writable, pending < Self.maximumPending / 2 {
            paused = false
            connection.setReading(true)
        }
    }
}

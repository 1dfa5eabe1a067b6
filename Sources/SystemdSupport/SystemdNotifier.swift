import CSystemd
import Glibc

/// Tells the service manager about our state through `sd_notify(3)`. Without
/// `NOTIFY_SOCKET` (not started by systemd) every call is a harmless no-op.
public struct SystemdNotifier: Sendable {
    /// Creates a notifier; it reads `NOTIFY_SOCKET` at each call, as libsystemd does.
    public init() {}

    /// `READY=1`: listeners are bound and the configuration is valid (or, with
    /// token readiness, tokens can be had). Sent with the current status line.
    @discardableResult
    public func ready(status: String) -> Bool {
        send("READY=1\nSTATUS=\(Self.oneLine(status))")
    }

    /// `STATUS=…`: one human-readable line shown by `systemctl status`.
    @discardableResult
    public func status(_ status: String) -> Bool {
        send("STATUS=\(Self.oneLine(status))")
    }

    /// `RELOADING=1` with `MONOTONIC_USEC`, as `Type=notify-reload` expects; follow with `ready(status:)`.
    @discardableResult
    public func reloading() -> Bool {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let usec = UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
        return send("RELOADING=1\nMONOTONIC_USEC=\(usec)")
    }

    /// `STOPPING=1`: shutdown has begun.
    @discardableResult
    public func stopping() -> Bool {
        send("STOPPING=1\nSTATUS=stopping: draining connections")
    }

    /// `WATCHDOG=1`: we are alive.
    @discardableResult
    public func watchdog() -> Bool {
        send("WATCHDOG=1")
    }

    /// Sends raw `state`; true when a manager received it.
    @discardableResult
    public func send(_ state: String) -> Bool {
        sd_notify(0, state) > 0
    }

    /// The watchdog interval when `WATCHDOG_USEC` is set for this process
    /// (`WATCHDOG_PID` unset or ours), else nil.
    public static func watchdogInterval() -> Duration? {
        var usec: UInt64 = 0
        guard sd_watchdog_enabled(0, &usec) > 0, usec > 0 else { return nil }
        return .microseconds(Int64(usec))
    }

    private static func oneLine(_ text: String) -> String {
        String(text.map { $0.isNewline ? " " : $0 }.prefix(500))
    }
}

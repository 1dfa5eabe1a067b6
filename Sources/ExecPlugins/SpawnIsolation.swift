public import Glibc

/// What every child the daemon spawns gets, a plugin or `tokenbrokerd --dev`'s provider: a
/// process group of its own (a terminal's Ctrl-C and a signal to the daemon's group are the
/// daemon's to handle), an empty signal mask and default dispositions (the daemon blocks the
/// signals it handles; a child inheriting that would ignore SIGTERM), and no descriptor from
/// `lowest` on — only those the caller's actions put below it.
public enum SpawnIsolation {
    /// Adds the above to `actions` and `attributes`; call after the caller's own `adddup2`s.
    public static func apply(to actions: inout posix_spawn_file_actions_t, _ attributes: inout posix_spawnattr_t, closingFrom lowest: Int32) {
        // Any descriptor the daemon opened (or was passed) without O_CLOEXEC stays out too.
        Syscalls.addCloseFrom(&actions, lowest)
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    }
}

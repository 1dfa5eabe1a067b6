import Glibc

/// The environment variable `name`, as `ProcessInfo.environment` gave it.
func environmentValue(_ name: String) -> String? {
    getenv(name).map { String(cString: $0) }
}

/// The working directory (`getcwd`), for making a relative path absolute.
func currentDirectory() -> String? {
    guard let path = getcwd(nil, 0) else { return nil }
    defer { free(path) }
    return String(cString: path)
}

/// This executable's path (`/proc/self/exe`), to find the programs installed beside it.
func executablePath() -> String? {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard length > 0 else { return nil }
    return String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// The contents of a small text file (a secret, up to 64 KiB), as UTF-8; nil (with `errno`
/// set) when it cannot be read, or its contents are not UTF-8 (EILSEQ) or too long (EFBIG).
func readTextFile(_ path: String) -> String? {
    let descriptor = open(path, O_RDONLY | O_CLOEXEC)
    guard descriptor >= 0 else { return nil }
    defer { close(descriptor) }
    var contents: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = read(descriptor, &chunk, chunk.count)
        if count < 0, errno == EINTR { continue }
        guard count >= 0 else { return nil }
        if count == 0 { break }
        contents += chunk[..<count]
        guard contents.count <= 64 * 1024 else {
            errno = EFBIG
            return nil
        }
    }
    guard let text = String(validating: contents, as: UTF8.self) else {
        errno = EILSEQ
        return nil
    }
    return text
}

/// Where `needle` first starts in `haystack`: `String.replacing` and `split` by a string are in
/// `_StringProcessing`, which with its regex parser was 0.9 MiB of the CLI for two calls.
func offset(of needle: some Collection<UInt8>, in haystack: [UInt8]) -> Int? {
    let needle = Array(needle)
    guard !needle.isEmpty, needle.count <= haystack.count else { return nil }
    return (0...(haystack.count - needle.count)).first { haystack[$0..<($0 + needle.count)].elementsEqual(needle) }
}

import PlainJSON
import Testing
import TokenExchange

/// `UntypedJSON`, which replaced `JSONSerialization` (not in FoundationEssentials) for the
/// documents read field by field: the values it gives and what it refuses.
@Suite struct UntypedJSONTests {
    @Test func valuesAreSwiftTypes() throws {
        let text = #"{"s":"a\/b\u00e9\ud83d\ude00\n","n":-12.5e1,"i":42,"t":true,"f":false,"z":null,"a":[1,"x"],"o":{"k":"v"}}"#
        let object = try #require(UntypedJSON.object(Array(text.utf8)))
        #expect(object["s"] as? String == "a/bé😀\n")
        #expect(object["n"] as? Double == -125)
        #expect(object["i"] as? Double == 42)
        #expect(object["t"] as? Bool == true)
        #expect(object["f"] as? Bool == false)
        #expect(object["z"] is JSONNull)
        #expect((object["a"] as? [Any])?.count == 2)
        #expect((object["o"] as? [String: Any])?["k"] as? String == "v")
    }

    @Test("a JSON boolean is never a number, a number never a boolean")
    func booleansAreNotNumbers() throws {
        let object = try #require(UntypedJSON.object(Array(#"{"t":true,"one":1}"#.utf8)))
        #expect(object["t"] as? Double == nil)
        #expect(object["one"] as? Bool == nil)
    }

    @Test func anyValueAtTheTop() throws {
        #expect(try UntypedJSON.parse(Array(" \"x\" ".utf8), allowingFragments: true) as? String == "x")
        #expect(throws: UntypedJSON.Invalid.self) { try UntypedJSON.parse(Array(" \"x\" ".utf8)) }
        #expect(try UntypedJSON.parse(Array("[]".utf8)) as? [Any] != nil)
        #expect(UntypedJSON.object(Array("[1]".utf8)) == nil)
    }

    @Test(arguments: [
        "", " ", "{", "{\"a\":1,}", "[1,]", "{\"a\" 1}", "{a:1}", "'a'", "01", "1.", ".5", "1e", "-", "+1", "nul", "tru",
        "\"\\x\"", "\"\\ud800\"", "\"\\udc00\"", "\"a\u{01}b\"", "{\"a\":1} x", "{}{}", "NaN", "Infinity",
        "[" + String(repeating: "[", count: 600) + "]",
    ])
    func refusesWhatIsNotJSON(_ text: String) {
        #expect(throws: UntypedJSON.Invalid.self) { try UntypedJSON.parse(Array(text.utf8), allowingFragments: true) }
    }

    @Test func refusesInvalidUTF8InAString() {
        #expect(throws: UntypedJSON.Invalid.self) { try UntypedJSON.parse([0x5B, 0x22, 0xC3, 0x28, 0x22, 0x5D]) }
    }

    @Test("serialize: keys sorted case-insensitively, slashes as they are, control characters escaped")
    func serializesSortedAndEscaped() {
        let line = UntypedJSON.serialize(["b": "x/y", "A": "q\"\\\n\u{01}", "a": "1"])
        #expect(String(decoding: line, as: UTF8.self) == #"{"A":"q\"\\\n\u0001","a":"1","b":"x/y"}"#)
        let back = UntypedJSON.object(line)
        #expect(back?["A"] as? String == "q\"\\\n\u{01}")
    }
}

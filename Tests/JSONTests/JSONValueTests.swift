@testable import JSON
import XCTest

final class JSONValueTests: XCTestCase {
    func testSerializationIsCompactAndSorted() {
        let value: JSONValue = ["zeta": 1, "alpha": [true, false, .null], "Beta": ["y": "x", "a": -3], "": 0.5]
        XCTAssertEqual(value.serialized, #"{"":0.5,"Beta":{"a":-3,"y":"x"},"alpha":[true,false,null],"zeta":1}"#)
        // Keys sort by UTF-8 bytes, so the order never depends on locale or normalization.
        let unicode: JSONValue = ["é": 1, "z": 2, "Z": 3, "a": 4]
        XCTAssertEqual(unicode.serialized, "{\"Z\":3,\"a\":4,\"z\":2,\"é\":1}")
    }

    func testStringEscaping() {
        XCTAssertEqual(JSONValue.string("a\"b\\c/\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}é😀").serialized,
                       "\"a\\\"b\\\\c/\\n\\r\\t\\b\\f\\u0000\\u001f\u{7f}é😀\"")
    }

    func testNumbers() {
        XCTAssertEqual(JSONValue.int(-5).serialized, "-5")
        XCTAssertEqual(JSONValue.uint(.max).serialized, "18446744073709551615")
        XCTAssertEqual(JSONValue.double(1).serialized, "1.0")
        XCTAssertEqual(JSONValue.double(0.1).serialized, "0.1")
        XCTAssertEqual(JSONValue.double(1e300).serialized, "1e+300")
        XCTAssertEqual(JSONValue.double(.infinity).serialized, "null")
        XCTAssertEqual(JSONValue.double(.nan).serialized, "null")
    }

    func testRoundTrip() throws {
        let texts = [
            #"{"a":[1,2.5,-3,"x",null,true,false,{}],"b":{"c":[[]]},"u":18446744073709551615,"i":-9223372036854775808}"#,
            #"["\u0000\u001f\"\\","😀","\u007f"]"#,
            #"[1e-05,1.5e+20,-0.0]"#,
        ]
        for text in texts {
            let value = try JSONValue.parse(text)
            XCTAssertEqual(try JSONValue.parse(value.serialized), value, text)
            XCTAssertEqual(try JSONValue.parse(value.serialized).serialized, value.serialized, "stable: \(text)")
        }
    }

    func testIntegerEqualityIsByValue() {
        XCTAssertEqual(JSONValue.int(5), JSONValue.uint(5))
        XCTAssertEqual(Set<JSONValue>([.int(5), .uint(5)]).count, 1)
        XCTAssertNotEqual(JSONValue.int(-1), JSONValue.uint(.max))
        XCTAssertNotEqual(JSONValue.int(1), JSONValue.double(1))
        XCTAssertNotEqual(JSONValue.int(0), JSONValue.bool(false))
        XCTAssertEqual(JSONValue(integer: UInt64.max), .uint(.max))
        XCTAssertEqual(JSONValue(integer: UInt64(7)), .int(7))
        XCTAssertEqual(JSONValue(integer: Int8(-7)), .int(-7))
    }

    func testAccessors() {
        let value: JSONValue = ["s": "x", "n": 42, "big": .uint(.max), "neg": -1, "d": 2.5, "b": true, "a": [1, 2], "o": [:]]
        XCTAssertEqual(value["s"]?.stringValue, "x")
        XCTAssertEqual(value["n"]?.intValue, 42)
        XCTAssertEqual(value["n"]?.uint64Value, 42)
        XCTAssertEqual(value["big"]?.uint64Value, .max)
        XCTAssertNil(value["big"]?.intValue)
        XCTAssertNil(value["neg"]?.uint64Value)
        XCTAssertEqual(value["neg"]?.int64Value, -1)
        XCTAssertNil(value["d"]?.intValue)
        XCTAssertEqual(value["d"]?.doubleValue, 2.5)
        XCTAssertEqual(value["n"]?.doubleValue, 42)
        XCTAssertEqual(value["b"]?.boolValue, true)
        XCTAssertEqual(value["a"]?[1], 2)
        XCTAssertNil(value["a"]?[2])
        XCTAssertEqual(value["o"]?.objectValue, [:])
        XCTAssertNil(value["missing"])
        XCTAssertNil(JSONValue.string("x")["k"])
        XCTAssertTrue(JSONValue.null.isNull)
        XCTAssertEqual(JSONValue.address(0x1000).serialized, "\"0x1000\"")
        XCTAssertEqual(JSONValue.double(1).kindDescription, "a non-integer number")
    }
}

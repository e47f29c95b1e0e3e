//! The canonical CBOR codec and blake3 call keys.
//!
//! Everything stent stores — arguments, results, signal payloads, events — is
//! CBOR. Payloads used for hashing are *canonical* (RFC 8949 §4.2.1: map keys
//! sorted by their encoded bytes, shortest integer forms), so a `HashMap`
//! argument yields the same [`CallKey`] in every process. ciborium writes map
//! entries in iteration order, so we canonicalise through [`ciborium::Value`].

use std::fmt;

use ciborium::Value;
use serde::{Serialize, de::DeserializeOwned};

use crate::error::CodecError;

/// Limits enforced when decoding untrusted payloads: built with
/// [`PayloadLimits::new`] or [`Default`] (the struct is `#[non_exhaustive]`,
/// so a limit can be added without breaking callers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PayloadLimits {
    /// Largest accepted payload, in bytes.
    pub max_bytes: usize,
    /// Deepest accepted nesting of arrays, maps and tags.
    pub max_depth: usize,
}

impl Default for PayloadLimits {
    fn default() -> Self {
        Self {
            max_bytes: 16 * 1024 * 1024,
            max_depth: 128,
        }
    }
}

impl PayloadLimits {
    /// At most `max_bytes` bytes, nested at most `max_depth` deep.
    pub const fn new(max_bytes: usize, max_depth: usize) -> Self {
        PayloadLimits {
            max_bytes,
            max_depth,
        }
    }

    /// Room left in a journal event for what surrounds the value it
    /// carries (its kind, seq, version, the failure's envelope).
    const EVENT_ALLOWANCE_BYTES: usize = 4 * 1024;
    const EVENT_ALLOWANCE_DEPTH: usize = 4;

    /// The limits a value (arguments, a result, an error, a signal, a
    /// context write) must meet to be stored: these, but never past the
    /// [default](PayloadLimits::default) limits every reader of a journal
    /// decodes events with, less room for the event around the value. A
    /// value that meets them is readable by every tool; one that does not
    /// is refused when written, never stored.
    ///
    /// ```
    /// use stent_journal::PayloadLimits;
    ///
    /// let stored = PayloadLimits::default().for_values();
    /// assert!(stored.max_bytes < PayloadLimits::default().max_bytes);
    /// let tight = PayloadLimits::new(1024, 16).for_values();
    /// assert_eq!(tight.max_bytes, 1024);
    /// ```
    pub fn for_values(self) -> PayloadLimits {
        let readable = PayloadLimits::default();
        PayloadLimits::new(
            self.max_bytes
                .min(readable.max_bytes - Self::EVENT_ALLOWANCE_BYTES),
            self.max_depth
                .min(readable.max_depth - Self::EVENT_ALLOWANCE_DEPTH),
        )
    }
}

/// A CBOR-encoded value: arguments, a result, an error, a signal payload.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Payload(Vec<u8>);

impl Payload {
    /// Encodes `value` as canonical CBOR.
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Payload, CodecError> {
        let value = Value::serialized(value).map_err(|e| CodecError::Encode(e.to_string()))?;
        Ok(Payload(encode_canonical(value)?))
    }

    /// Wraps bytes that are already CBOR (read from storage). Nothing is checked
    /// until [`Payload::decode`].
    pub fn from_bytes(bytes: Vec<u8>) -> Payload {
        Payload(bytes)
    }

    /// Decodes the payload as `T` under the default [`PayloadLimits`].
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, CodecError> {
        self.decode_with(PayloadLimits::default())
    }

    /// Decodes the payload as `T` under explicit limits.
    ///
    /// Both data models a [`Serializer`] writes are read: when `T` does not
    /// decode from the payload directly, it is decoded through the JSON data
    /// model (where [`Serializer::Json`] wrote integer map keys as strings),
    /// and the first error is returned if that fails too.
    pub fn decode_with<T: DeserializeOwned>(&self, limits: PayloadLimits) -> Result<T, CodecError> {
        match decode_bytes(&self.0, limits, "payload") {
            Ok(v) => Ok(v),
            Err(first @ CodecError::Decode { .. }) => {
                let Ok(json) = decode_bytes::<serde_json::Value>(&self.0, limits, "payload") else {
                    return Err(first);
                };
                serde_json::from_value(json).map_err(|_| first)
            }
            Err(other) => Err(other),
        }
    }

    /// Checks the payload against `limits` (size, nesting depth, well-formed
    /// CBOR) without building the value.
    pub fn check(&self, limits: PayloadLimits) -> Result<(), CodecError> {
        self.decode_with::<serde::de::IgnoredAny>(limits)
            .map(|_| ())
    }

    /// Decodes into a generic CBOR value: engine plumbing for diffs (the
    /// type is ciborium's); to show a payload, use [`Payload::to_json`].
    #[doc(hidden)]
    pub fn to_value(&self) -> Result<Value, CodecError> {
        self.decode()
    }

    /// The payload as JSON, without knowing its type (for display):
    /// integers and floats as numbers (integers beyond 64 bits and
    /// non-finite floats as strings), byte strings as `"h'<hex>'"`, tags as
    /// their content, map keys that are not text as their JSON text.
    ///
    /// ```
    /// use stent_journal::Payload;
    ///
    /// let payload = Payload::encode(&("ada", 3, [1.5])).unwrap();
    /// assert_eq!(payload.to_json().unwrap(), serde_json::json!(["ada", 3, [1.5]]));
    /// ```
    pub fn to_json(&self) -> Result<serde_json::Value, CodecError> {
        self.to_value().map(|v| cbor_to_json(&v))
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The encoded bytes, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if no bytes at all (not even an encoded null).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// How user values (arguments, results, errors, signal payloads, custom
/// state) become [`Payload`]s: the seed's `serializer=` option.
///
/// The journal itself is always canonical CBOR; the serializer decides which
/// *data model* a value is written in:
///
/// - [`Serializer::Cbor`] (the default) writes the value's serde form as is:
///   byte strings, integer map keys, `u128` and non-finite floats all survive.
/// - [`Serializer::Json`] first converts the value to JSON
///   (`serde_json::Value`), so only JSON-representable values are accepted
///   (map keys must be strings or integers — integers are written as
///   strings —, integers must fit in 64 bits, a non-finite float becomes
///   `null`) and every stored payload can be shown as JSON
///   without loss — by `stent journal --json` or by a tool in another
///   language. A value JSON cannot hold is refused when it is encoded (at
///   dispatch, or when the body returns), with an error naming the reason.
///
/// Decoding needs no setting: [`Payload::decode`] reads both data models, so
/// an executor can switch serializers without making existing journals
/// unreadable (the call keys of new calls change, since the encoded arguments
/// can differ).
///
/// ```
/// use stent_journal::codec::Serializer;
/// use std::collections::BTreeMap;
///
/// // JSON writes integer map keys as strings; both read back the same.
/// let by_id: BTreeMap<u32, String> = [(7, "seven".to_string())].into();
/// for serializer in [Serializer::Cbor, Serializer::Json] {
///     let p = serializer.encode(&by_id).unwrap();
///     assert_eq!(p.decode::<BTreeMap<u32, String>>().unwrap(), by_id);
/// }
/// // A map keyed by a sequence has no JSON form.
/// let by_pair: BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into();
/// assert!(Serializer::Cbor.encode(&by_pair).is_ok());
/// let err = Serializer::Json.encode(&by_pair).unwrap_err();
/// assert!(err.to_string().contains("JSON"));
///
/// let p = Serializer::Json.encode(&vec![1u8, 2, 3]).unwrap();
/// assert_eq!(p.decode::<Vec<u8>>().unwrap(), vec![1, 2, 3]);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Serializer {
    /// serde's data model, written as canonical CBOR (the default).
    #[default]
    Cbor,
    /// The JSON data model, written as canonical CBOR.
    Json,
}

impl Serializer {
    /// Encodes `value` in this serializer's data model.
    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Payload, CodecError> {
        match self {
            Serializer::Cbor => Payload::encode(value),
            Serializer::Json => {
                let json =
                    serde_json::to_value(value).map_err(|e| CodecError::NotJson(e.to_string()))?;
                Payload::encode(&json)
            }
        }
    }

    /// The serializer's name, as the seed spells it (`"cbor"`, `"json"`).
    pub fn name(self) -> &'static str {
        match self {
            Serializer::Cbor => "cbor",
            Serializer::Json => "json",
        }
    }
}

impl std::str::FromStr for Serializer {
    type Err = CodecError;

    /// Parses `"json"` or `"cbor"` (case-insensitive). The seed's `"pickle"`
    /// is refused: stent has no format that runs code on decode.
    fn from_str(s: &str) -> Result<Serializer, CodecError> {
        match s.to_ascii_lowercase().as_str() {
            "cbor" => Ok(Serializer::Cbor),
            "json" => Ok(Serializer::Json),
            _ => Err(CodecError::UnknownSerializer(s.to_string())),
        }
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_value() {
            Ok(v) => write!(f, "Payload({v:?})"),
            Err(_) => write!(f, "Payload(<{} undecodable bytes>)", self.0.len()),
        }
    }
}

impl serde::Serialize for Payload {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Payload {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes: serde_bytes_compat::ByteBuf = serde::Deserialize::deserialize(d)?;
        Ok(Payload(bytes.0))
    }
}

/// Minimal owned byte buffer deserializer (accepts CBOR byte strings and arrays of u8).
mod serde_bytes_compat {
    use serde::de::{Deserializer, SeqAccess, Visitor};
    use std::fmt;

    pub struct ByteBuf(pub Vec<u8>);

    impl<'de> serde::Deserialize<'de> for ByteBuf {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = ByteBuf;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a byte string")
                }
                fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<ByteBuf, E> {
                    Ok(ByteBuf(v.to_vec()))
                }
                fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<ByteBuf, E> {
                    Ok(ByteBuf(v))
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ByteBuf, A::Error> {
                    let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                    while let Some(b) = seq.next_element::<u8>()? {
                        out.push(b);
                    }
                    Ok(ByteBuf(out))
                }
            }
            d.deserialize_byte_buf(V)
        }
    }
}

/// Decodes CBOR bytes as `T`, enforcing size and nesting limits before any
/// allocation proportional to what the bytes claim.
pub(crate) fn decode_bytes<T: DeserializeOwned>(
    bytes: &[u8],
    limits: PayloadLimits,
    what: &'static str,
) -> Result<T, CodecError> {
    if bytes.len() > limits.max_bytes {
        return Err(CodecError::TooLarge {
            size: bytes.len(),
            limit: limits.max_bytes,
        });
    }
    ciborium::de::from_reader_with_recursion_limit(bytes, limits.max_depth).map_err(|e| match e {
        ciborium::de::Error::RecursionLimitExceeded => CodecError::TooDeep {
            limit: limits.max_depth,
        },
        other => CodecError::Decode {
            what,
            reason: describe_de_error(other),
        },
    })
}

fn describe_de_error<E: fmt::Debug>(e: ciborium::de::Error<E>) -> String {
    match e {
        ciborium::de::Error::Io(io) => format!("truncated or unreadable input ({io:?})"),
        ciborium::de::Error::Syntax(offset) => format!("malformed CBOR at byte {offset}"),
        ciborium::de::Error::Semantic(offset, msg) => match offset {
            Some(o) => format!("{msg} (at byte {o})"),
            None => msg,
        },
        ciborium::de::Error::RecursionLimitExceeded => "nesting too deep".into(),
    }
}

/// Encodes a CBOR value canonically: map keys sorted by their encoded bytes,
/// recursively.
pub(crate) fn encode_canonical(value: Value) -> Result<Vec<u8>, CodecError> {
    to_cbor(&canonicalize(value)?)
}

/// `value` written as CBOR, as serde gives it (map entries in the order
/// it serializes them).
pub(crate) fn to_cbor<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    // Room for a typical event or key without growing.
    let mut out = Vec::with_capacity(128);
    ciborium::ser::into_writer(value, &mut out).map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(out)
}

fn canonicalize(value: Value) -> Result<Value, CodecError> {
    Ok(match value {
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(canonicalize)
                .collect::<Result<_, _>>()?,
        ),
        Value::Map(entries) => {
            let mut keyed = entries
                .into_iter()
                .map(|(k, v)| {
                    let k = canonicalize(k)?;
                    Ok((to_cbor(&k)?, k, canonicalize(v)?))
                })
                .collect::<Result<Vec<_>, CodecError>>()?;
            keyed.sort_by(|a, b| a.0.cmp(&b.0));
            if keyed.windows(2).any(|w| w[0].0 == w[1].0) {
                // Duplicate keys are not valid CBOR, but a `Serialize` impl or
                // a decoded payload can hold them: order equal keys by their
                // encoded values so the bytes never depend on entry order.
                let mut with_values = keyed
                    .into_iter()
                    .map(|(kb, k, v)| Ok((kb, to_cbor(&v)?, k, v)))
                    .collect::<Result<Vec<_>, CodecError>>()?;
                with_values.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
                Value::Map(with_values.into_iter().map(|(_, _, k, v)| (k, v)).collect())
            } else {
                Value::Map(keyed.into_iter().map(|(_, k, v)| (k, v)).collect())
            }
        }
        Value::Tag(tag @ (BIGNUM_POS | BIGNUM_NEG), inner) => match *inner {
            Value::Bytes(bytes) if bytes.len() <= 16 => canonical_bignum(tag, bytes),
            inner => Value::Tag(tag, Box::new(canonicalize(inner)?)),
        },
        Value::Tag(tag, inner) => Value::Tag(tag, Box::new(canonicalize(*inner)?)),
        // Floats: ciborium already writes the shortest form that round-trips.
        other => other,
    })
}

/// CBOR tag 2: unsigned bignum (RFC 8949 §3.4.3).
const BIGNUM_POS: u64 = 2;
/// CBOR tag 3: negative bignum, `-1 - n`.
const BIGNUM_NEG: u64 = 3;

/// The form a bignum of at most 16 bytes takes once written and read back.
///
/// ciborium reads a definite-length bignum of up to 16 bytes as a number:
/// an integer when it fits CBOR's major types 0/1, otherwise a bignum with
/// leading zeros stripped. A `Value::Tag(2, Bytes)` that did not come from
/// such a read (built by hand, or read from an *indefinite*-length byte
/// string) must be written in that same form, or encoding the decoded bytes
/// again would change them. A negative bignum below `-2^127` cannot be read
/// back as a number at all, so it keeps its tag, padded past 16 bytes so
/// that it reads back as the same tag.
fn canonical_bignum(tag: u64, bytes: Vec<u8>) -> Value {
    let mut be = [0u8; 16];
    be[16 - bytes.len()..].copy_from_slice(&bytes);
    let raw = u128::from_be_bytes(be);
    if tag == BIGNUM_POS {
        return Value::from(raw);
    }
    match i128::try_from(raw) {
        Ok(n) => Value::from(-1 - n),
        Err(_) => {
            let mut padded = vec![0u8];
            padded.extend_from_slice(&be);
            Value::Tag(tag, Box::new(Value::Bytes(padded)))
        }
    }
}

/// Identifies "the same call": `blake3(function ‖ version ‖ canonical args)`.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct CallKey(#[serde(with = "key_bytes")] pub [u8; 32]);

mod key_bytes {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let buf: super::serde_bytes_compat::ByteBuf = serde::Deserialize::deserialize(d)?;
        buf.0
            .try_into()
            .map_err(|v: Vec<u8>| serde::de::Error::invalid_length(v.len(), &"32 bytes"))
    }
}

impl CallKey {
    /// The key of calling `function` (at `version`) with the canonical `args`.
    ///
    /// Each part is length-prefixed so that no two different triples can
    /// concatenate to the same bytes.
    pub fn new(function: &str, version: Option<&str>, args: &Payload) -> CallKey {
        let mut h = blake3::Hasher::new();
        h.update(b"stent/call-key/v1");
        for part in [
            function.as_bytes(),
            version.unwrap_or("").as_bytes(),
            args.as_bytes(),
        ] {
            h.update(&(part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.update(&[u8::from(version.is_some())]);
        CallKey(*h.finalize().as_bytes())
    }

    /// Lower-case hex of the whole key.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// The first 12 hex digits, for timelines.
    pub fn short(&self) -> String {
        self.to_hex()[..12].to_string()
    }
}

impl fmt::Debug for CallKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CallKey({})", self.short())
    }
}

impl fmt::Display for CallKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Lower-case hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// See [`Payload::to_json`].
fn cbor_to_json(value: &Value) -> serde_json::Value {
    use serde_json::Value as Json;
    match value {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Integer(i) => {
            let n = i128::from(*i);
            if let Ok(v) = i64::try_from(n) {
                Json::from(v)
            } else if let Ok(v) = u64::try_from(n) {
                Json::from(v)
            } else {
                Json::String(n.to_string())
            }
        }
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Json::Number)
            .unwrap_or_else(|| Json::String(f.to_string())),
        Value::Text(s) => Json::String(s.clone()),
        Value::Bytes(b) => Json::String(format!("h'{}'", hex(b))),
        Value::Tag(_, inner) => cbor_to_json(inner),
        Value::Array(items) => Json::Array(items.iter().map(cbor_to_json).collect()),
        Value::Map(entries) => {
            let mut map = serde_json::Map::new();
            for (k, v) in entries {
                let key = match k {
                    Value::Text(s) => s.clone(),
                    other => cbor_to_json(other).to_string(),
                };
                map.insert(key, cbor_to_json(v));
            }
            Json::Object(map)
        }
        _ => Json::String(format!("{value:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashMap};

    #[test]
    fn hashmap_order_does_not_change_the_encoding() {
        let mut a: HashMap<String, i64> = HashMap::new();
        let mut b: HashMap<String, i64> = HashMap::new();
        for i in 0..50 {
            a.insert(format!("k{i}"), i);
        }
        for i in (0..50).rev() {
            b.insert(format!("k{i}"), i);
        }
        let pa = Payload::encode(&a).unwrap();
        let pb = Payload::encode(&b).unwrap();
        assert_eq!(pa, pb);
        let sorted: BTreeMap<String, i64> = a.into_iter().collect();
        // Canonical order sorts by encoded key bytes: shorter keys first.
        let decoded: BTreeMap<String, i64> = pa.decode().unwrap();
        assert_eq!(decoded, sorted);
    }

    #[test]
    fn canonical_key_order_is_by_encoded_bytes() {
        let m: HashMap<&str, u8> = [("aa", 1), ("b", 2), ("a", 3)].into();
        let p = Payload::encode(&m).unwrap();
        // map(3) "a" 3 "b" 2 "aa" 1
        assert_eq!(
            p.as_bytes(),
            &[0xa3, 0x61, b'a', 3, 0x61, b'b', 2, 0x62, b'a', b'a', 1]
        );
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let p = Payload::encode(&("hello", 42u32, vec![1u8, 2, 3])).unwrap();
        for cut in 0..p.len() {
            let short = Payload::from_bytes(p.as_bytes()[..cut].to_vec());
            assert!(short.decode::<(String, u32, Vec<u8>)>().is_err());
        }
    }

    #[test]
    fn deep_nesting_is_rejected() {
        let mut bytes = vec![0x81u8; 100_000]; // array(1) nested 100k deep
        bytes.push(0x00);
        let err = Payload::from_bytes(bytes).to_value().unwrap_err();
        assert!(matches!(err, CodecError::TooDeep { .. }), "{err}");
    }

    #[test]
    fn check_enforces_limits_without_decoding_a_value() {
        let deep = Payload::encode(&vec![vec![vec![vec![1u8]]]]).unwrap();
        let tight = PayloadLimits::new(1024, 3);
        assert!(matches!(deep.check(tight), Err(CodecError::TooDeep { .. })));
        assert!(deep.check(PayloadLimits::default()).is_ok());
        let big = Payload::encode(&vec![0u8; 2000]).unwrap();
        assert!(matches!(big.check(tight), Err(CodecError::TooLarge { .. })));
    }

    #[test]
    fn oversized_payload_is_rejected_before_decoding() {
        let p = Payload::from_bytes(vec![0u8; 64]);
        let err = p
            .decode_with::<Value>(PayloadLimits::new(10, 8))
            .unwrap_err();
        assert_eq!(
            err,
            CodecError::TooLarge {
                size: 64,
                limit: 10
            }
        );
    }

    proptest::proptest! {
        #[test]
        fn insertion_order_never_changes_bytes(
            entries in proptest::collection::vec(("[a-z]{0,6}", proptest::num::i64::ANY), 0..30),
            seed in proptest::num::u64::ANY,
        ) {
            let forward: Vec<(String, i64)> = entries.clone();
            let mut shuffled = entries;
            // Deterministic shuffle driven by the seed.
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let a: HashMap<String, i64> = forward.into_iter().collect();
            let b: HashMap<String, i64> = shuffled.into_iter().collect();
            proptest::prop_assume!(a == b);
            let pa = Payload::encode(&(a.clone(), vec![a.clone()])).unwrap();
            let pb = Payload::encode(&(b, vec![a])).unwrap();
            proptest::prop_assert_eq!(pa.as_bytes(), pb.as_bytes());
            let back: (BTreeMap<String, i64>, Vec<BTreeMap<String, i64>>) = pa.decode().unwrap();
            proptest::prop_assert_eq!(Payload::encode(&back).unwrap(), pa);
        }
    }

    /// Found by the `call_key_stability` fuzzer: a map with a duplicate key
    /// encoded differently depending on entry order.
    #[test]
    fn duplicate_map_keys_encode_the_same_in_any_order() {
        let a = Value::Map(vec![
            (Value::Integer(0.into()), Value::Integer(0.into())),
            (Value::Text("k".into()), Value::Null),
            (Value::Integer(0.into()), Value::Integer(21.into())),
        ]);
        let Value::Map(mut entries) = a.clone() else {
            unreachable!()
        };
        entries.reverse();
        let b = Value::Map(entries);
        let pa = Payload::encode(&a).unwrap();
        assert_eq!(pa, Payload::encode(&b).unwrap());
        assert_eq!(
            CallKey::new("f", None, &pa),
            CallKey::new("f", None, &Payload::encode(&b).unwrap())
        );
        assert_eq!(
            pa.as_bytes(),
            &[0xa3, 0x00, 0x00, 0x00, 0x15, 0x61, b'k', 0xf6]
        );
    }

    /// Found by the `cbor_roundtrip` seed corpus: a bignum read from an
    /// indefinite-length byte string re-encoded as a tag, which then read
    /// back as an integer, so canonical encoding was not idempotent.
    #[test]
    fn small_bignums_canonicalise_to_what_they_read_back_as() {
        let cases: [(&[u8], &[u8]); 4] = [
            // 2(_ h'01' h'00') = 256
            (
                &[0xc2, 0x5f, 0x41, 0x01, 0x41, 0x00, 0xff],
                &[0x19, 0x01, 0x00],
            ),
            // 3(_ h'05') = -6
            (&[0xc3, 0x5f, 0x41, 0x05, 0xff], &[0x25]),
            // 2(_ h'0001…01' 10 bytes) = 2^64 + 1: stays a bignum, zeros stripped
            (
                &[0xc2, 0x5f, 0x4a, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xff],
                &[0xc2, 0x49, 1, 0, 0, 0, 0, 0, 0, 0, 1],
            ),
            // 3(_ h'ff'×16) < -2^127: kept as a tag, padded to 17 bytes
            (
                &[
                    0xc3, 0x5f, 0x50, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                ],
                &[
                    0xc3, 0x51, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                    0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                ],
            ),
        ];
        for (input, expected) in cases {
            let value = Payload::from_bytes(input.to_vec()).to_value().unwrap();
            let once = Payload::encode(&value).unwrap();
            assert_eq!(once.as_bytes(), expected, "{value:?}");
            let twice = Payload::encode(&once.to_value().unwrap()).unwrap();
            assert_eq!(twice, once, "{value:?}");
        }
    }

    #[test]
    fn call_key_separates_parts() {
        let p = Payload::encode(&(1u8,)).unwrap();
        assert_ne!(
            CallKey::new("ab", Some("c"), &p),
            CallKey::new("a", Some("bc"), &p)
        );
        assert_ne!(CallKey::new("a", None, &p), CallKey::new("a", Some(""), &p));
    }
}

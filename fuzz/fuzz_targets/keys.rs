//! Key parsing and mapping: whatever string arrives (a raw key, a percent-encoded path parameter, a form-encoded
//! object key from an S3 event), parsing answers without panicking, and every accepted key survives each mapping
//! and encoding s3kv applies to it and comes back as itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use s3kv::key::{ItemKey, KeyMap, ObjectKind};
use s3kv::percent::{self, Encoding};

fuzz_target!(|input: (&str, &str, bool)| {
    let (raw, encoded, empty_prefix) = input;
    let map = if empty_prefix {
        KeyMap::new("", "s3kv:")
    } else {
        KeyMap::new("items/", "s3kv:")
    };

    if let Ok(key) = ItemKey::parse(raw) {
        assert_eq!(key.as_str(), raw);
        let object_key = map.object_key(&key);
        assert_eq!(map.classify(&object_key), ObjectKind::Item(key.clone()));
        assert_eq!(
            map.item_from_cache_key(&map.cache_key(&key)),
            Some(key.clone())
        );
        // Through API Gateway (path encoding, `+` literal) and through an S3 event (form encoding, `+` a space).
        assert_eq!(
            ItemKey::from_path_param(&percent::encode_path(raw)).as_ref(),
            Ok(&key)
        );
        let in_event = percent::encode_form(&object_key);
        let decoded = percent::decode(&in_event, Encoding::Form).expect("our own encoding decodes");
        assert_eq!(map.classify(&decoded), ObjectKind::Item(key));
    }

    // Classification is the inverse of the mapping: an object it calls an item is exactly that item's object.
    if let ObjectKind::Item(key) = map.classify(raw) {
        assert_eq!(map.object_key(&key), raw);
    }
    if let Some(key) = map.item_from_cache_key(raw) {
        assert_eq!(map.cache_key(&key), raw);
    }

    // Encoded input from outside: decoding either way fails cleanly or yields a string that re-encodes to
    // something that decodes back to it.
    for encoding in [Encoding::Path, Encoding::Form] {
        if let Ok(decoded) = percent::decode(encoded, encoding) {
            let again = match encoding {
                Encoding::Path => percent::encode_path(&decoded),
                Encoding::Form => percent::encode_form(&decoded),
            };
            assert_eq!(
                percent::decode(&again, encoding).as_deref(),
                Ok(decoded.as_str())
            );
        }
    }
    let _ = ItemKey::from_path_param(encoded);
});

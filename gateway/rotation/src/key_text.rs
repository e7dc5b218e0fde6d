//! Serde for [`PublicKey`] in its base64 form, the form operators read and write.

use serde::{Deserialize as _, Deserializer, Serializer};
use ztgw_model::key::PublicKey;

/// Serializes a key as base64.
pub(crate) fn serialize<S: Serializer>(key: &PublicKey, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&key.to_base64())
}

/// Deserializes a key from base64.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<PublicKey, D::Error> {
    let text = String::deserialize(deserializer)?;
    PublicKey::from_base64(&text).map_err(serde::de::Error::custom)
}

/// The same for an optional key (`null` when absent).
pub(crate) mod option {
    use serde::{Deserialize as _, Deserializer, Serializer};
    use ztgw_model::key::PublicKey;

    /// Serializes an optional key as base64 or `null`.
    pub(crate) fn serialize<S: Serializer>(
        key: &Option<PublicKey>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match key {
            Some(key) => serializer.serialize_str(&key.to_base64()),
            None => serializer.serialize_none(),
        }
    }

    /// Deserializes an optional key from base64 or `null`.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<PublicKey>, D::Error> {
        Option::<String>::deserialize(deserializer)?
            .map(|text| PublicKey::from_base64(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// The same for a list of keys, bounded on reading by [`crate::responder::MAX_RETIRED_KEYS`]
/// (a longer list is refused: the state was not written by us).
pub(crate) mod list {
    use serde::ser::SerializeSeq as _;
    use serde::{Deserialize as _, Deserializer, Serializer};
    use ztgw_model::key::PublicKey;

    use crate::responder::MAX_RETIRED_KEYS;

    /// Serializes keys as a list of base64 strings.
    pub(crate) fn serialize<S: Serializer>(
        keys: &[PublicKey],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(keys.len()))?;
        for key in keys {
            seq.serialize_element(&key.to_base64())?;
        }
        seq.end()
    }

    /// Deserializes a list of base64 keys.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<PublicKey>, D::Error> {
        let texts = Vec::<String>::deserialize(deserializer)?;
        if texts.len() > MAX_RETIRED_KEYS {
            return Err(serde::de::Error::custom("too many retired keys"));
        }
        texts
            .iter()
            .map(|text| PublicKey::from_base64(text).map_err(serde::de::Error::custom))
            .collect()
    }
}

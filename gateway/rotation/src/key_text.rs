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

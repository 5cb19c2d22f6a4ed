//! Passwords: Argon2id at OWASP's recommended parameters (19 MiB, 2 passes, 1 lane), with a
//! 16-byte salt from the host's randomness. The store keeps a [`PasswordHash`] per account,
//! parameters included, so stronger ones can come later without breaking old accounts.
//!
//! The length rule ([`MIN_LEN`]..=[`MAX_LEN`] bytes) is checked by the caller before anything is
//! hashed, and a password is never truncated. A sign-in for a name with no account is verified
//! against a fixed dummy hash ([`verify_unknown`]), so both failures cost the same.

use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};

use crate::context::Entropy;
use crate::encoding::{from_hex, hex};
use crate::error::ApiError;

/// Memory per hash, KiB (OWASP: 19 MiB).
pub const MEMORY_KIB: u32 = 19 * 1024;
/// Passes over the memory (OWASP: 2).
pub const PASSES: u32 = 2;
/// Lanes (OWASP: 1).
pub const LANES: u32 = 1;
/// Shortest password, bytes.
pub const MIN_LEN: usize = 8;
/// Longest password, bytes: longer ones are refused, never cut.
pub const MAX_LEN: usize = 128;
const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;

/// A password as an account keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PasswordHash {
    /// Always `argon2id`.
    pub algorithm: String,
    /// Argon2 memory, KiB.
    pub memory_kib: u32,
    /// Argon2 passes.
    pub passes: u32,
    /// Argon2 lanes.
    pub lanes: u32,
    /// Hex.
    pub salt: String,
    /// Hex.
    pub hash: String,
}

/// Hashes `password` with a fresh salt.
pub fn hash(password: &[u8], entropy: &dyn Entropy) -> Result<PasswordHash, ApiError> {
    let mut salt = [0u8; SALT_LEN];
    entropy.fill(&mut salt);
    let digest = argon2id(password, &salt, MEMORY_KIB, PASSES, LANES)?;
    Ok(PasswordHash {
        algorithm: "argon2id".to_string(),
        memory_kib: MEMORY_KIB,
        passes: PASSES,
        lanes: LANES,
        salt: hex(&salt),
        hash: hex(&digest),
    })
}

/// Whether `password` is the one `stored` was made from, compared in constant time.
pub fn verify(password: &[u8], stored: &PasswordHash) -> Result<bool, ApiError> {
    let corrupt = || ApiError::Store("an account's password hash is not hex".to_string());
    if stored.algorithm != "argon2id" {
        return Err(ApiError::Store(format!(
            "an account's password uses '{}', not argon2id",
            stored.algorithm
        )));
    }
    let salt = from_hex(&stored.salt).ok_or_else(corrupt)?;
    let expected = from_hex(&stored.hash).ok_or_else(corrupt)?;
    let digest = argon2id(
        password,
        &salt,
        stored.memory_kib,
        stored.passes,
        stored.lanes,
    )?;
    Ok(constant_time_eq(&digest, &expected))
}

/// Spends what [`verify`] spends for a name that has no account, and fails: the answer and its
/// time must not tell which names exist.
pub fn verify_unknown(password: &[u8]) -> Result<bool, ApiError> {
    let digest = argon2id(password, b"no-such-account!", MEMORY_KIB, PASSES, LANES)?;
    // Compared as a real hash is, so this path does the same work; the answer is no regardless.
    std::hint::black_box(constant_time_eq(&digest, &[0u8; HASH_LEN]));
    Ok(false)
}

fn argon2id(
    password: &[u8],
    salt: &[u8],
    memory_kib: u32,
    passes: u32,
    lanes: u32,
) -> Result<[u8; HASH_LEN], ApiError> {
    let params = Params::new(memory_kib, passes, lanes, Some(HASH_LEN)).map_err(|err| {
        ApiError::Store(format!(
            "argon2 parameters {memory_kib} KiB, {passes} passes, {lanes} lanes: {err}"
        ))
    })?;
    let mut digest = [0u8; HASH_LEN];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(password, salt, &mut digest)
        .map_err(|err| ApiError::Store(format!("argon2 failed: {err}")))?;
    Ok(digest)
}

/// Equal lengths and bytes, in time that depends only on the length.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::SeededEntropy;

    #[test]
    fn a_password_verifies_and_another_does_not() -> Result<(), ApiError> {
        let stored = hash(b"correct horse", &SeededEntropy::new(1))?;
        assert_eq!(stored.memory_kib, 19 * 1024);
        assert_eq!(stored.salt.len(), 32);
        assert!(verify(b"correct horse", &stored)?);
        assert!(!verify(b"correct horsf", &stored)?);
        assert!(!verify_unknown(b"correct horse")?);
        // Salts differ, so two accounts with one password store different hashes.
        assert_ne!(stored, hash(b"correct horse", &SeededEntropy::new(2))?);
        Ok(())
    }
}

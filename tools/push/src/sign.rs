//! `--sign-key`: cosign-compatible signatures of pushed digests.
//!
//! The format is cosign's "simple signing" one, which `cosign verify --key`
//! accepts without a transparency log (`--insecure-ignore-tlog`): a manifest
//! tagged `sha256-<hex>.sig` whose layers are JSON payloads naming the
//! repository and the signed digest (`application/vnd.dev.cosign.simplesigning.v1+json`),
//! each annotated with the base64 DER ECDSA-P256-SHA256 signature of its
//! bytes (`dev.cosignproject.cosign/signature`). Signatures are RFC 6979
//! deterministic, so signing the same digest again gives the same manifest,
//! and a push of signed, unchanged content writes nothing.

use std::path::Path;

use anyhow::{anyhow, bail, Context};
use base64::Engine as _;
use kiln_oci::Digest;
use p256::ecdsa::signature::Signer;
use p256::pkcs8::DecodePrivateKey;
use serde::Deserialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

pub const PAYLOAD_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// The environment variable cosign reads the password of its keys from.
pub const PASSWORD_VARIABLE: &str = "COSIGN_PASSWORD";

/// A private key, loaded and checked before anything is pushed.
pub struct SigningKey(p256::ecdsa::SigningKey);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)") // never the key itself
    }
}

#[derive(Deserialize)]
struct EncryptedKey {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    salt: String,
}

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct ScryptParams {
    N: u64,
    r: u32,
    p: u32,
}

#[derive(Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

impl SigningKey {
    /// Reads `--sign-key PATH`: a PKCS#8 (`PRIVATE KEY`) or SEC1 (`EC
    /// PRIVATE KEY`) P-256 PEM, or cosign's encrypted key (`ENCRYPTED
    /// SIGSTORE PRIVATE KEY`, from `cosign generate-key-pair`), decrypted
    /// with `password()` (COSIGN_PASSWORD). Errors never quote the key.
    pub fn load(
        path: &Path,
        password: impl FnOnce() -> Option<String>,
    ) -> anyhow::Result<SigningKey> {
        let what = || format!("--sign-key {}", path.display());
        let pem = Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("{}: cannot read the key", what()))?,
        );
        Self::from_pem(&pem, password).with_context(what)
    }

    pub fn from_pem(
        pem: &str,
        password: impl FnOnce() -> Option<String>,
    ) -> anyhow::Result<SigningKey> {
        let label = pem_rfc7468::decode_label(pem.trim_start().as_bytes())
            .map_err(|_| anyhow!("not a PEM file (expected -----BEGIN PRIVATE KEY----- or cosign's ENCRYPTED SIGSTORE PRIVATE KEY)"))?;
        let secret = match label {
            "PRIVATE KEY" => p256::SecretKey::from_pkcs8_pem(pem.trim_start())
                .map_err(|_| anyhow!("not a PKCS#8 EC P-256 private key"))?,
            "EC PRIVATE KEY" => p256::SecretKey::from_sec1_pem(pem.trim_start())
                .map_err(|_| anyhow!("not a SEC1 EC P-256 private key"))?,
            "ENCRYPTED SIGSTORE PRIVATE KEY" | "ENCRYPTED COSIGN PRIVATE KEY" => {
                let (_, der) = pem_rfc7468::decode_vec(pem.trim_start().as_bytes())
                    .map_err(|_| anyhow!("the PEM armour of the encrypted key is corrupt"))?;
                let password = password().ok_or_else(|| {
                    anyhow!("the key is encrypted: set {PASSWORD_VARIABLE} to its password")
                })?;
                let plain = decrypt(&der, &Zeroizing::new(password))?;
                p256::SecretKey::from_pkcs8_der(&plain)
                    .map_err(|_| anyhow!("the decrypted key is not a PKCS#8 EC P-256 private key"))?
            }
            "ENCRYPTED PRIVATE KEY" => bail!(
                "encrypted PKCS#8 keys are not supported: give an unencrypted PKCS#8 key or a cosign key"
            ),
            other => bail!("a PEM {other:?} is not a private key (expected PRIVATE KEY or ENCRYPTED SIGSTORE PRIVATE KEY)"),
        };
        Ok(SigningKey(p256::ecdsa::SigningKey::from(secret)))
    }

    /// The public key as PEM (`cosign verify --key` takes it).
    #[cfg(test)]
    pub fn public_pem(&self) -> anyhow::Result<String> {
        use p256::pkcs8::EncodePublicKey;
        self.0
            .verifying_key()
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .map_err(|e| anyhow!("encoding the public key: {e}"))
    }

    /// The base64 DER signature of `payload`.
    pub fn sign(&self, payload: &[u8]) -> String {
        let signature: p256::ecdsa::Signature = self.0.sign(payload);
        base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes())
    }
}

/// cosign's encrypted key: scrypt derives a secretbox key from the
/// password, which opens the PKCS#8 DER.
fn decrypt(json_bytes: &[u8], password: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    use crypto_secretbox::aead::{Aead, KeyInit};
    let key: EncryptedKey = serde_json::from_slice(json_bytes)
        .map_err(|_| anyhow!("the encrypted key is not cosign's JSON"))?;
    if key.kdf.name != "scrypt" || key.cipher.name != "nacl/secretbox" {
        bail!(
            "the encrypted key uses {} + {}, not scrypt + nacl/secretbox",
            key.kdf.name,
            key.cipher.name
        );
    }
    let b64 = |s: &str, what: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|_| anyhow!("the encrypted key's {what} is not base64"))
    };
    let salt = b64(&key.kdf.salt, "salt")?;
    let nonce = b64(&key.cipher.nonce, "nonce")?;
    let ciphertext = b64(&key.ciphertext, "ciphertext")?;
    let n = key.kdf.params.N;
    if !n.is_power_of_two() || !(2..=(1 << 20)).contains(&n) {
        bail!("the encrypted key's scrypt N ({n}) is not a power of two up to 2^20");
    }
    let params = scrypt::Params::new(
        n.trailing_zeros() as u8,
        key.kdf.params.r,
        key.kdf.params.p,
        32,
    )
    .map_err(|e| anyhow!("the encrypted key's scrypt parameters: {e}"))?;
    let mut derived = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(password.as_bytes(), &salt, &params, derived.as_mut())
        .map_err(|e| anyhow!("scrypt: {e}"))?;
    if nonce.len() != 24 {
        bail!("the encrypted key's nonce is {} bytes, not 24", nonce.len());
    }
    let cipher = crypto_secretbox::XSalsa20Poly1305::new(derived.as_ref().into());
    let plain = cipher
        .decrypt(nonce.as_slice().into(), ciphertext.as_slice())
        .map_err(|_| {
            anyhow!(
                "wrong password ({PASSWORD_VARIABLE}), or the key is corrupt: it does not decrypt"
            )
        })?;
    Ok(Zeroizing::new(plain))
}

/// The simple-signing payload cosign signs and verifies for `digest` in
/// `repository` (`HOST[:PORT]/NAME`).
pub fn payload(repository: &str, digest: &Digest) -> Vec<u8> {
    let doc = json!({
        "critical": {
            "identity": {"docker-reference": repository},
            "image": {"docker-manifest-digest": digest.to_string()},
            "type": "cosign container image signature",
        },
        "optional": null,
    });
    serde_json::to_vec(&doc).expect("a JSON value serialises")
}

/// The tag cosign looks for the signatures of `digest` at.
pub fn signature_tag(digest: &Digest) -> String {
    format!("{}-{}.sig", digest.algorithm(), digest.hex())
}

/// What to write for a signature.
pub struct SignatureManifest {
    pub manifest: Vec<u8>,
    pub config: Vec<u8>,
}

/// The signature manifest with `payload` and `signature` added to the
/// layers of `existing` (another signer's, kept), or `None` when `existing`
/// holds this very signature already. The config is cosign's: an empty
/// image config whose diff_ids are the payloads' digests.
pub fn signature_manifest(
    existing: Option<&[u8]>,
    payload: &[u8],
    signature: &str,
) -> anyhow::Result<Option<SignatureManifest>> {
    let payload_digest = kiln_oci::sha256_bytes(payload);
    let mut layers: Vec<Value> = match existing {
        Some(bytes) => {
            let doc: Value =
                serde_json::from_slice(bytes).context("parsing the existing signature manifest")?;
            doc.get("layers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        }
        None => Vec::new(),
    };
    let ours = |l: &Value| {
        l.get("digest").and_then(Value::as_str) == Some(&payload_digest.to_string())
            && l.pointer(&format!(
                "/annotations/{}",
                SIGNATURE_ANNOTATION.replace('/', "~1")
            ))
            .and_then(Value::as_str)
                == Some(signature)
    };
    if layers.iter().any(ours) {
        return Ok(None);
    }
    layers.push(json!({
        "mediaType": PAYLOAD_MEDIA_TYPE,
        "size": payload.len(),
        "digest": payload_digest.to_string(),
        "annotations": {SIGNATURE_ANNOTATION: signature},
    }));
    let diff_ids: Vec<Value> = layers
        .iter()
        .filter_map(|l| l.get("digest").cloned())
        .collect();
    let history: Vec<Value> = layers
        .iter()
        .map(|_| json!({"created": "0001-01-01T00:00:00Z"}))
        .collect();
    let config = serde_json::to_vec(&json!({
        "architecture": "",
        "config": {},
        "created": "0001-01-01T00:00:00Z",
        "history": history,
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "size": config.len(),
            "digest": kiln_oci::sha256_bytes(&config).to_string(),
        },
        "layers": layers,
    }))?;
    Ok(Some(SignatureManifest { manifest, config }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier;

    fn testdata(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../testdata/cosign")
            .join(name);
        std::fs::read_to_string(path).expect("testdata")
    }

    /// A key made by `cosign generate-key-pair` (password `pw`) and its
    /// public key as cosign wrote it.
    #[test]
    fn cosign_encrypted_key_decrypts_to_the_public_key_cosign_wrote() {
        let key =
            SigningKey::from_pem(&testdata("cosign.key"), || Some("pw".into())).expect("decrypts");
        assert_eq!(
            key.public_pem().expect("pem").trim(),
            testdata("cosign.pub").trim()
        );
    }

    #[test]
    fn wrong_or_missing_password_is_a_clear_error_without_the_key() {
        let err = SigningKey::from_pem(&testdata("cosign.key"), || Some("nope".into()))
            .expect_err("wrong password");
        let text = format!("{err:#}");
        assert!(text.contains("wrong password"), "{text}");
        assert!(!text.contains("eyJr"), "the key must not be quoted: {text}");
        let err = SigningKey::from_pem(&testdata("cosign.key"), || None).expect_err("no password");
        assert!(format!("{err:#}").contains(PASSWORD_VARIABLE));
    }

    #[test]
    fn pkcs8_pem_loads_and_garbage_does_not() {
        let secret = p256::SecretKey::from_slice(&[7u8; 32]).expect("scalar");
        let pem = p256::pkcs8::EncodePrivateKey::to_pkcs8_pem(&secret, p256::pkcs8::LineEnding::LF)
            .expect("pem");
        let key = SigningKey::from_pem(&pem, || None).expect("pkcs8");
        assert!(key.public_pem().expect("pub").contains("PUBLIC KEY"));
        assert!(format!("{:?}", key) == "SigningKey(..)");
        assert!(SigningKey::from_pem("hello", || None).is_err());
        assert!(SigningKey::from_pem(
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            || None
        )
        .is_err());
        let err =
            SigningKey::load(Path::new("/nonexistent/key.pem"), || None).expect_err("unreadable");
        assert!(format!("{err:#}").contains("--sign-key /nonexistent/key.pem: cannot read"));
    }

    #[test]
    fn payload_is_cosigns_and_the_signature_verifies() {
        let digest = kiln_oci::sha256_bytes(b"index");
        let p = payload("127.0.0.1:5000/kiln/api", &digest);
        let v: Value = serde_json::from_slice(&p).expect("json");
        assert_eq!(v["critical"]["type"], "cosign container image signature");
        assert_eq!(
            v["critical"]["identity"]["docker-reference"],
            "127.0.0.1:5000/kiln/api"
        );
        assert_eq!(
            v["critical"]["image"]["docker-manifest-digest"],
            digest.to_string()
        );
        assert!(v["optional"].is_null());
        assert_eq!(
            signature_tag(&digest),
            format!("sha256-{}.sig", digest.hex())
        );

        let key = SigningKey::from_pem(&testdata("cosign.key"), || Some("pw".into())).expect("key");
        let sig = key.sign(&p);
        assert_eq!(sig, key.sign(&p), "RFC 6979: deterministic");
        let der = base64::engine::general_purpose::STANDARD
            .decode(&sig)
            .expect("b64");
        let sig = p256::ecdsa::Signature::from_der(&der).expect("der");
        key.0.verifying_key().verify(&p, &sig).expect("verifies");
    }

    #[test]
    fn signature_manifest_keeps_others_and_is_a_no_op_when_present() {
        let p = payload("r/x", &kiln_oci::sha256_bytes(b"i"));
        let first = signature_manifest(None, &p, "c2ln")
            .expect("ok")
            .expect("new");
        let doc: Value = serde_json::from_slice(&first.manifest).expect("json");
        assert_eq!(doc["layers"].as_array().expect("layers").len(), 1);
        assert_eq!(doc["layers"][0]["mediaType"], PAYLOAD_MEDIA_TYPE);
        assert_eq!(
            doc["config"]["digest"],
            kiln_oci::sha256_bytes(&first.config).to_string()
        );
        assert!(signature_manifest(Some(&first.manifest), &p, "c2ln")
            .expect("ok")
            .is_none());
        let second = signature_manifest(Some(&first.manifest), &p, "b3RoZXI=")
            .expect("ok")
            .expect("added");
        let doc: Value = serde_json::from_slice(&second.manifest).expect("json");
        assert_eq!(doc["layers"].as_array().expect("layers").len(), 2);
    }
}

//! The LFS Batch API's messages (git-lfs `docs/api/batch.md`,
//! <https://github.com/git-lfs/git-lfs/blob/main/docs/api/batch.md>): what a client asks, what it
//! is answered, both ways (the node answers clients and asks the upstream's LFS server), and the
//! checks a request passes before anything is looked up.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::lfs::oid::LfsOid;

/// The media type of every batch request and response.
pub const MEDIA_TYPE: &str = "application/vnd.git-lfs+json";

/// The one transfer adapter served.
pub const BASIC: &str = "basic";

/// What the client wants to do with the objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// Fetch them.
    Download,
    /// Send them.
    Upload,
}

/// A ref the objects belong to (git-lfs ≥ 2.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefSpec {
    /// Fully qualified ref name.
    pub name: String,
}

/// One object asked about, as sent (checked by [`ObjectSpec::checked`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectSpec {
    /// Its ID as sent.
    pub oid: String,
    /// Its size as sent (negative is possible on the wire, and refused).
    pub size: i64,
}

/// A batch request. Unknown fields are ignored (later clients may send more).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRequest {
    /// Download or upload.
    pub operation: Operation,
    /// The adapters the client has; absent means `basic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfers: Option<Vec<String>>,
    /// The ref, if the client names one.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub ref_spec: Option<RefSpec>,
    /// The objects.
    pub objects: Vec<ObjectSpec>,
    /// The hash algorithm naming the objects; absent means `sha256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_algo: Option<String>,
}

/// Why a whole batch request is refused: its HTTP status and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct Refusal {
    /// HTTP status (413, 422 …).
    pub status: u16,
    /// What the client is told.
    pub message: String,
}

impl BatchRequest {
    /// A request to download `objects` (ID, size) with the basic transfer.
    pub fn download<'a>(objects: impl IntoIterator<Item = (&'a LfsOid, u64)>) -> Self {
        Self {
            operation: Operation::Download,
            transfers: Some(vec![BASIC.into()]),
            ref_spec: None,
            objects: objects
                .into_iter()
                .map(|(oid, size)| ObjectSpec {
                    oid: oid.to_string(),
                    size: i64::try_from(size).unwrap_or(i64::MAX),
                })
                .collect(),
            hash_algo: None,
        }
    }

    /// Refuses a request this node cannot answer at all: another transfer adapter or hash
    /// algorithm only (422), more than `max_objects` objects (413).
    pub fn check(&self, max_objects: usize) -> Result<(), Refusal> {
        if let Some(t) = &self.transfers {
            if !t.iter().any(|t| t == BASIC) {
                return Err(Refusal {
                    status: 422,
                    message: format!(
                        "only the basic transfer is served (asked: {})",
                        t.join(", ")
                    ),
                });
            }
        }
        if let Some(h) = self.hash_algo.as_deref().filter(|h| *h != "sha256") {
            return Err(Refusal {
                status: 422,
                message: format!("only sha256 object IDs are served (asked: {h})"),
            });
        }
        if self.objects.len() > max_objects {
            return Err(Refusal {
                status: 413,
                message: format!(
                    "{} objects in one batch; at most {max_objects}",
                    self.objects.len()
                ),
            });
        }
        Ok(())
    }
}

impl ObjectSpec {
    /// The object's ID and size, or the per-object error (422) a malformed one gets.
    pub fn checked(&self) -> Result<(LfsOid, u64), ObjectError> {
        let oid = LfsOid::parse(&self.oid).ok_or_else(|| ObjectError {
            code: 422,
            message: "the oid is not a SHA-256 (64 lowercase hex digits)".into(),
        })?;
        let size = u64::try_from(self.size).map_err(|_| ObjectError {
            code: 422,
            message: "the size is negative".into(),
        })?;
        Ok((oid, size))
    }
}

/// A per-object error (the HTTP status that fits: 404, 410, 422 …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectError {
    /// Status-like code.
    pub code: u16,
    /// What the client is told.
    pub message: String,
}

/// How to transfer one object.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    /// Where.
    pub href: String,
    /// Headers to send with it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub header: BTreeMap<String, String>,
    /// Seconds it stays valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<i64>,
    /// When it stops being valid (RFC 3339), for servers that say it this way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

impl std::fmt::Debug for Action {
    /// Header values may be credentials or tokens: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Action")
            .field("href", &self.href.split('?').next().unwrap_or_default())
            .field("header", &self.header.keys().collect::<Vec<_>>())
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// The actions for one object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actions {
    /// For a download.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download: Option<Action>,
    /// For an upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<Action>,
    /// After an upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<Action>,
}

/// The answer about one object: actions, or an error, or neither (an upload the server has).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectAnswer {
    /// Its ID.
    pub oid: String,
    /// Its size.
    pub size: i64,
    /// Whether the actions carry their own authorization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authenticated: Option<bool>,
    /// What to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<Actions>,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ObjectError>,
}

/// A successful batch response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchResponse {
    /// The adapter chosen; absent means `basic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer: Option<String>,
    /// One answer per object asked about.
    pub objects: Vec<ObjectAnswer>,
    /// The hash algorithm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_algo: Option<String>,
}

/// The body of a refused request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub message: String,
    /// Where to read more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub documentation_url: Option<String>,
    /// The request's ID, for the logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const OID: &str = "4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393";

    #[test]
    fn the_documented_messages_read_and_write_as_documented() {
        // The request and response examples of docs/api/batch.md (URL in the module doc).
        let req: BatchRequest = serde_json::from_value(json!({
          "operation": "download",
          "transfers": [ "basic" ],
          "ref": { "name": "refs/heads/master" },
          "objects": [ { "oid": "12345678", "size": 123 } ]
        }))
        .expect("request");
        assert_eq!(req.operation, Operation::Download);
        assert_eq!(
            req.ref_spec.as_ref().map(|r| r.name.as_str()),
            Some("refs/heads/master")
        );
        assert_eq!(req.check(100), Ok(()));
        // The doc's short oid is not one this node accepts: a per-object 422.
        assert_eq!(req.objects[0].checked().map_err(|e| e.code), Err(422));

        let answer = json!({
          "transfer": "basic",
          "objects": [ {
              "oid": "1111111",
              "size": 123,
              "authenticated": true,
              "actions": { "download": {
                  "href": "https://some-download.com",
                  "header": { "Key": "value" },
                  "expires_at": "2016-11-10T15:29:07Z"
              } }
          } ]
        });
        let parsed: BatchResponse = serde_json::from_value(answer.clone()).expect("response");
        assert_eq!(serde_json::to_value(&parsed).expect("json"), answer);
        let error = json!({
          "transfer": "basic",
          "objects": [ { "oid": "1111111", "size": 123,
                         "error": { "code": 404, "message": "Object does not exist" } } ]
        });
        let parsed: BatchResponse = serde_json::from_value(error.clone()).expect("response");
        assert_eq!(serde_json::to_value(&parsed).expect("json"), error);
        let refused = json!({
          "message": "Not found",
          "documentation_url": "https://lfs-server.com/docs/errors",
          "request_id": "123"
        });
        let parsed: ErrorBody = serde_json::from_value(refused.clone()).expect("error body");
        assert_eq!(serde_json::to_value(&parsed).expect("json"), refused);
    }

    #[test]
    fn requests_this_node_cannot_answer_are_refused_whole_or_per_object() {
        let req =
            |v: serde_json::Value| -> BatchRequest { serde_json::from_value(v).expect("request") };
        // No transfers, unknown fields: basic assumed, extra ignored.
        let r =
            req(json!({"operation": "upload", "objects": [{"oid": OID, "size": 5}], "future": 1}));
        assert_eq!(r.check(10), Ok(()));
        assert_eq!(
            r.objects[0].checked().map(|(o, s)| (o.to_string(), s)),
            Ok((OID.to_owned(), 5))
        );
        let r = req(json!({"operation": "download", "transfers": ["ssh", "tus"], "objects": []}));
        assert_eq!(r.check(10).map_err(|e| e.status), Err(422));
        let r = req(json!({"operation": "download", "hash_algo": "sha512", "objects": []}));
        assert_eq!(r.check(10).map_err(|e| e.status), Err(422));
        let many: Vec<_> = (0..11).map(|_| json!({"oid": OID, "size": 1})).collect();
        let r = req(json!({"operation": "download", "objects": many}));
        assert_eq!(r.check(10).map_err(|e| e.status), Err(413));
        for bad in [
            json!({"oid": OID, "size": -1}),
            json!({"oid": OID.to_uppercase(), "size": 1}),
        ] {
            let r = req(json!({"operation": "download", "objects": [bad]}));
            assert_eq!(r.objects[0].checked().map_err(|e| e.code), Err(422));
        }
        assert!(serde_json::from_value::<BatchRequest>(
            json!({"operation": "delete", "objects": []})
        )
        .is_err());
        assert!(serde_json::from_value::<BatchRequest>(json!({"operation": "download"})).is_err());
    }
}

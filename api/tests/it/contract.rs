//! docs/openapi.yaml against the real API: every answer the API gives for every kind of
//! request (each status it can send) is documented there for its path and method, and its
//! body validates against the documented schema; so are the document's own examples and
//! docs/api.md's. The document cannot drift from the code without this failing.

use std::time::Duration;

use hyper::{Method, StatusCode};
use serde_json::{json, Map, Value};
use testkit::{repo_root, Reply, TestApi};
use yaml_rust2::{Yaml, YamlLoader};

const TRANSACT: &str = "/clientes/{id}/transacoes";
const STATEMENT: &str = "/clientes/{id}/extrato";

/// docs/openapi.yaml as JSON, with every `$ref` resolved on demand.
struct Spec(Value);

impl Spec {
    fn load() -> Spec {
        let text = std::fs::read_to_string(repo_root().join("docs/openapi.yaml")).unwrap();
        let docs = YamlLoader::load_from_str(&text).expect("docs/openapi.yaml is YAML");
        Spec(to_json(&docs[0]))
    }

    /// `value` with every local `$ref` replaced by what it names (the document has no
    /// recursive schema).
    fn resolve(&self, value: &Value) -> Value {
        match value {
            Value::Object(map) => match map.get("$ref").and_then(Value::as_str) {
                Some(pointer) => {
                    let target = self
                        .0
                        .pointer(pointer.trim_start_matches('#'))
                        .unwrap_or_else(|| panic!("$ref {pointer} names nothing"));
                    self.resolve(target)
                }
                None => Value::Object(
                    map.iter()
                        .map(|(k, v)| (k.clone(), self.resolve(v)))
                        .collect::<Map<_, _>>(),
                ),
            },
            Value::Array(items) => Value::Array(items.iter().map(|v| self.resolve(v)).collect()),
            other => other.clone(),
        }
    }

    /// The documented response of `method` on `path` with `status`, resolved.
    fn response(&self, path: &str, method: &Method, status: StatusCode) -> Value {
        let operation = &self.0["paths"][path][method.as_str().to_lowercase()];
        assert!(operation.is_object(), "{method} {path} is not documented");
        let response = &operation["responses"][status.as_str()];
        assert!(
            response.is_object(),
            "{method} {path} answered {status}, which docs/openapi.yaml does not document"
        );
        self.resolve(response)
    }

    /// Checks one real answer: documented, with the documented headers, and a body that is
    /// JSON valid against the documented schema (or empty where none is documented).
    fn check(&self, path: &str, method: Method, reply: &Reply) {
        let response = self.response(path, &method, reply.status);
        let what = format!("{method} {path} → {}", reply.status);
        if let Some(headers) = response["headers"].as_object() {
            for name in headers.keys() {
                assert!(
                    reply.headers.contains_key(name.as_str()),
                    "{what}: no {name} header"
                );
            }
        }
        let Some(schema) = response["content"]["application/json"].get("schema") else {
            assert!(
                reply.body.is_empty(),
                "{what}: a body where none is documented"
            );
            return;
        };
        assert_eq!(
            reply.headers.get("content-type").map(|v| v.as_bytes()),
            Some(&b"application/json"[..]),
            "{what}"
        );
        validate(&what, schema, &reply.json());
    }
}

fn validate(what: &str, schema: &Value, instance: &Value) {
    let validator = jsonschema::validator_for(schema).expect("a valid JSON Schema");
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{what}: {instance} breaks the schema: {errors:?}"
    );
}

fn to_json(yaml: &Yaml) -> Value {
    match yaml {
        Yaml::Hash(hash) => Value::Object(
            hash.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        other => panic!("a key that is not a string: {other:?}"),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Integer(i) => json!(i),
        Yaml::Real(r) => json!(r.parse::<f64>().unwrap()),
        Yaml::Boolean(b) => json!(b),
        Yaml::Null => Value::Null,
        other => panic!("unexpected YAML: {other:?}"),
    }
}

fn path_of(template: &str, client: &str) -> String {
    template.replace("{id}", client)
}

#[tokio::test]
async fn every_answer_is_documented_and_matches_its_schema() {
    let spec = Spec::load();
    let api = TestApi::start(&[("DB_TIMEOUT_MS", "300"), ("API_HEADER_TIMEOUT_MS", "300")]).await;
    let target = &api.target;
    let post = async |client: &str, body: &str| {
        let reply = target.post(&path_of(TRANSACT, client), body).await;
        spec.check(TRANSACT, Method::POST, &reply);
        reply
    };
    let get = async |method: Method, client: &str| {
        let reply = target
            .request(method.clone(), &path_of(STATEMENT, client), b"")
            .await;
        spec.check(STATEMENT, method, &reply);
        reply
    };

    // 200s, with non-ASCII descriptions at the length limit.
    let answers = [
        post(
            "1",
            r#"{"valor": 1000, "tipo": "c", "descricao": "descricao"}"#,
        )
        .await,
        post(
            "1",
            r#"{"valor": 1, "tipo": "d", "descricao": "çãéíõüñàèì"}"#,
        )
        .await,
        post(
            "2",
            r#"{"valor": 2147483647, "tipo": "c", "descricao": "😀"}"#,
        )
        .await,
    ];
    assert!(answers.iter().all(|r| r.status == StatusCode::OK));
    for _ in 0..11 {
        post("3", r#"{"valor": 1, "tipo": "c", "descricao": "x"}"#).await;
    }
    let statement = get(Method::GET, "1").await;
    assert_eq!(statement.status, StatusCode::OK);
    assert_eq!(
        statement.json()["ultimas_transacoes"][0]["descricao"],
        "çãéíõüñàèì",
        "ten non-ASCII characters kept as sent"
    );
    assert_eq!(
        get(Method::GET, "3").await.json()["ultimas_transacoes"]
            .as_array()
            .unwrap()
            .len(),
        10
    );
    assert_eq!(get(Method::HEAD, "1").await.status, StatusCode::OK);

    // 422s: every kind of invalid body, and a debit past the limit.
    for body in [
        r#"{"valor": 1.5, "tipo": "c", "descricao": "x"}"#,
        r#"{"valor": 0, "tipo": "c", "descricao": "x"}"#,
        r#"{"valor": 2147483648, "tipo": "c", "descricao": "x"}"#,
        r#"{"valor": 1, "tipo": "x", "descricao": "x"}"#,
        r#"{"valor": 1, "tipo": "c", "descricao": ""}"#,
        r#"{"valor": 1, "tipo": "c", "descricao": "çãéíõüñàèìò"}"#,
        r#"{"valor": 1, "tipo": "c", "descricao": "a\u0000b"}"#,
        r#"{"valor": 1, "tipo": "c"}"#,
        r#"[1, 2]"#,
        "not json",
        r#"{"valor": 1000000000, "tipo": "d", "descricao": "demais"}"#,
    ] {
        assert_eq!(
            post("1", body).await.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}"
        );
    }
    // A credit that would take the balance past the 32-bit range.
    assert_eq!(
        post("2", r#"{"valor": 1, "tipo": "c", "descricao": "x"}"#)
            .await
            .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    // 404s: unknown clients and ids that cannot be clients, on both paths.
    for client in ["6", "0", "-1", "abc", "99999999999"] {
        let body = r#"{"valor": 1, "tipo": "c", "descricao": "x"}"#;
        assert_eq!(
            post(client, body).await.status,
            StatusCode::NOT_FOUND,
            "{client}"
        );
        assert_eq!(
            get(Method::GET, client).await.status,
            StatusCode::NOT_FOUND,
            "{client}"
        );
        assert_eq!(
            get(Method::HEAD, client).await.status,
            StatusCode::NOT_FOUND,
            "{client}"
        );
    }

    // 405 with Allow, both ways round.
    let wrong = target.get(&path_of(TRANSACT, "1")).await;
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
    let response = spec.response(TRANSACT, &Method::POST, wrong.status);
    assert!(response.is_object() && wrong.headers.contains_key("allow"));
    let wrong = target.post(&path_of(STATEMENT, "1"), "{}").await;
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
    spec.check(STATEMENT, Method::GET, &wrong);

    // 413: declared too long, and sent too long without a declared length.
    let big = format!(
        r#"{{"valor": 1, "tipo": "c", "descricao": "{}"}}"#,
        "x".repeat(2000)
    );
    assert_eq!(post("1", &big).await.status, StatusCode::PAYLOAD_TOO_LARGE);
    let chunked = format!(
        "POST /clientes/1/transacoes HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\
         connection: close\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
        big.len()
    );
    let reply = parse(&target.raw(chunked.as_bytes()).await);
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    spec.check(TRANSACT, Method::POST, &reply);

    // 400: a body that breaks off mid-chunk.
    let broken =
        b"POST /clientes/1/transacoes HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\
                   connection: close\r\n\r\nzz\r\n";
    let reply = parse(&target.raw(broken).await);
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    spec.check(TRANSACT, Method::POST, &reply);

    // 408: a head that never ends.
    let reply = parse(
        &target
            .raw(b"GET /clientes/1/extrato HTTP/1.1\r\nhost: x\r\n")
            .await,
    );
    assert_eq!(reply.status, StatusCode::REQUEST_TIMEOUT);
    spec.check(STATEMENT, Method::GET, &reply);

    // 503: the client's row held past DB_TIMEOUT_MS.
    let lock = api.db.lock_client(4).await;
    let reply = post("4", r#"{"valor": 1, "tipo": "c", "descricao": "x"}"#).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    lock.release().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// A raw HTTP/1.1 response (as `Target::raw` returns it) as a Reply; the body as sent, or
/// de-chunked.
fn parse(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no head: {text}"));
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mut headers = hyper::HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':').unwrap();
        headers.append(
            hyper::header::HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
            value.trim().parse().unwrap(),
        );
    }
    let body = match headers.get("transfer-encoding") {
        Some(v) if v == "chunked" => {
            let mut out = String::new();
            let mut rest = body;
            while let Some((size, tail)) = rest.split_once("\r\n") {
                let size = usize::from_str_radix(size.trim(), 16).unwrap();
                if size == 0 {
                    break;
                }
                out.push_str(&tail[..size]);
                rest = &tail[size + 2..];
            }
            out
        }
        _ => body.to_owned(),
    };
    Reply {
        status: StatusCode::from_u16(status).unwrap(),
        headers,
        body: body.into_bytes().into(),
    }
}

#[test]
fn the_documents_examples_match_their_schemas() {
    let spec = Spec::load();
    let mut checked = 0;
    let mut stack = vec![
        spec.resolve(&spec.0["paths"]),
        spec.resolve(&spec.0["components"]),
    ];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(map) => {
                if let (Some(schema), Some(example)) = (map.get("schema"), map.get("example")) {
                    validate("an example in docs/openapi.yaml", schema, example);
                    checked += 1;
                }
                stack.extend(map.into_iter().map(|(_, v)| v));
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    assert!(checked >= 6, "only {checked} examples found");
}

/// docs/api.md's examples: each ```console block right after a line `<!-- example: METHOD PATH
/// STATUS -->` holds a curl command and the answer it prints. Run in order on a fresh
/// database, each gets that status and exactly that answer (a statement's timestamps
/// aside), and the answer validates against the document.
#[tokio::test]
async fn the_readmes_examples_give_the_answers_shown() {
    let spec = Spec::load();
    let api = TestApi::start(&[]).await;
    let readme = std::fs::read_to_string(repo_root().join("docs/api.md")).unwrap();
    let mut checked = 0;
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        let Some(example) = line.trim().strip_prefix("<!-- example: ") else {
            continue;
        };
        let example = example.trim_end_matches("-->").trim();
        let words: Vec<&str> = example.split_whitespace().collect();
        let [method, template, status] = words[..] else {
            panic!("docs/api.md example {example}: not METHOD PATH STATUS");
        };
        assert_eq!(lines.next().map(str::trim), Some("```console"), "{example}");
        let block: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        let command = block[0].strip_prefix("$ ").expect("a $ command line");
        let shown: Value = serde_json::from_str(&block[1..].join("\n"))
            .unwrap_or_else(|e| panic!("{example}: the answer shown is not JSON: {e}"));

        let (sent_method, path, headers, body) = curl(command);
        assert_eq!(sent_method.as_str(), method, "{command}");
        let headers: Vec<(&str, &[u8])> = headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes()))
            .collect();
        let reply = api
            .target
            .try_request_with(sent_method.clone(), &path, &headers, body.as_bytes())
            .await
            .unwrap();
        assert_eq!(reply.status.as_str(), status, "{command}: {}", reply.text());
        spec.check(template, sent_method.clone(), &reply);
        let documented = spec.response(template, &method.parse().unwrap(), reply.status);
        validate(
            example,
            &documented["content"]["application/json"]["schema"],
            &shown,
        );
        let (mut got, mut shown) = (reply.json(), shown);
        if template == STATEMENT && status == "200" {
            forget_times(&mut got);
            forget_times(&mut shown);
        }
        assert_eq!(got, shown, "{command}");
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} docs/api.md examples found");
}

/// Blanks every timestamp of a statement.
fn forget_times(statement: &mut Value) {
    statement["saldo"]["data_extrato"] = Value::Null;
    for entry in statement["ultimas_transacoes"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        entry["realizada_em"] = Value::Null;
    }
}

/// The method, path, headers other than content-type and body of a docs/api.md curl command
/// (`-X`, `-H`, `-d`, and the localhost:9999 URL; single-quoted arguments).
fn curl(command: &str) -> (Method, String, Vec<(String, String)>, String) {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in command.chars() {
        match c {
            '\'' => quoted = !quoted,
            ' ' if !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    words.push(word);
    assert_eq!(words[0], "curl", "{command}");
    let after = |flag: &str| {
        words
            .iter()
            .position(|w| w == flag)
            .map(|i| words[i + 1].clone())
    };
    let url = words
        .iter()
        .find(|w| w.starts_with("localhost:9999/"))
        .expect("a URL");
    let method = after("-X").unwrap_or_else(|| "GET".into());
    // The client sends content-type itself.
    let headers = words
        .windows(2)
        .filter(|w| w[0] == "-H")
        .filter_map(|w| w[1].split_once(':'))
        .filter(|(name, _)| !name.eq_ignore_ascii_case("content-type"))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    (
        method.parse().unwrap(),
        url["localhost:9999".len()..].to_owned(),
        headers,
        after("-d").unwrap_or_default(),
    )
}

//! Which endpoint a request is for. Only two paths exist:
//! `/clientes/{id}/transacoes` (POST) and `/clientes/{id}/extrato` (GET, HEAD).

use hyper::Method;

/// What a path asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /clientes/{id}/transacoes`: a credit or debit.
    Transact,
    /// `GET /clientes/{id}/extrato`: a statement.
    Statement,
}

impl Endpoint {
    /// The `Allow` header value for a 405.
    pub fn allow(self) -> &'static str {
        match self {
            Endpoint::Transact => "POST",
            Endpoint::Statement => "GET, HEAD",
        }
    }

    /// Whether `method` is the endpoint's (else 405 with `allow`).
    pub fn accepts(self, method: &Method) -> bool {
        match self {
            Endpoint::Transact => method == Method::POST,
            Endpoint::Statement => method == Method::GET || method == Method::HEAD,
        }
    }
}

/// A path of a known shape. `client` is `None` when the id cannot name a client (not a
/// positive 32-bit integer written in digits): that is a 404 without asking the database.
#[derive(Debug, PartialEq, Eq)]
pub struct Route {
    /// Which endpoint.
    pub endpoint: Endpoint,
    /// The client id, when the path's id is a valid one (else 404).
    pub client: Option<i32>,
}

/// The route of a request path, or None for a path the API does not serve (404).
pub fn route(path: &str) -> Option<Route> {
    let rest = path.strip_prefix("/clientes/")?;
    let (id, tail) = rest.split_once('/')?;
    let endpoint = match tail {
        "transacoes" => Endpoint::Transact,
        "extrato" => Endpoint::Statement,
        _ => return None,
    };
    let client = Some(id)
        .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|id| id.parse::<i32>().ok())
        .filter(|&id| id > 0);
    Some(Route { endpoint, client })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_paths() {
        let cases = [
            ("/clientes/1/transacoes", Endpoint::Transact, Some(1)),
            ("/clientes/5/extrato", Endpoint::Statement, Some(5)),
            (
                "/clientes/2147483647/extrato",
                Endpoint::Statement,
                Some(i32::MAX),
            ),
            ("/clientes/2147483648/extrato", Endpoint::Statement, None),
            ("/clientes/0/extrato", Endpoint::Statement, None),
            ("/clientes/-1/extrato", Endpoint::Statement, None),
            ("/clientes/+1/extrato", Endpoint::Statement, None),
            ("/clientes/abc/transacoes", Endpoint::Transact, None),
            ("/clientes//transacoes", Endpoint::Transact, None),
            ("/clientes/1.0/extrato", Endpoint::Statement, None),
        ];
        for (path, endpoint, client) in cases {
            assert_eq!(route(path), Some(Route { endpoint, client }), "{path}");
        }
    }

    #[test]
    fn unknown_paths() {
        for path in [
            "/",
            "/clientes",
            "/clientes/1",
            "/clientes/1/",
            "/clientes/1/extrato/",
            "/clientes/1/extratos",
            "/clientes/1/transacoes/x",
            "/cliente/1/extrato",
            "//clientes/1/extrato",
        ] {
            assert_eq!(route(path), None, "{path}");
        }
    }
}

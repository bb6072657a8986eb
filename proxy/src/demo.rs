//! The built-in demo origin: an artist's portfolio served on loopback.
//!
//! It exists so that `fixative run` with no configuration shows the whole
//! pipeline on a real page: HTML with a `<head>`, a gallery of real
//! photographs (public domain and CC0, see `proxy/assets/art/README.md`),
//! and deliberately no robots.txt.

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

/// One artwork of the demo gallery.
pub struct Artwork {
    /// File name under `/art/`.
    pub file: &'static str,
    /// Title shown in the gallery.
    pub title: &'static str,
    /// Caption.
    pub caption: &'static str,
    /// MIME type.
    pub content_type: &'static str,
    /// The image bytes.
    pub bytes: &'static [u8],
}

/// The gallery.
pub const ARTWORKS: &[Artwork] = &[
    Artwork {
        file: "astronaut.png",
        title: "Orbit",
        caption: "Portrait in the cupola, 512 × 512, PNG",
        content_type: "image/png",
        bytes: include_bytes!("../assets/art/astronaut.png"),
    },
    Artwork {
        file: "coffee.png",
        title: "Morning Cup",
        caption: "Still life, 600 × 400, PNG",
        content_type: "image/png",
        bytes: include_bytes!("../assets/art/coffee.png"),
    },
    Artwork {
        file: "chelsea.png",
        title: "Chelsea",
        caption: "Study of a cat, 451 × 300, PNG",
        content_type: "image/png",
        bytes: include_bytes!("../assets/art/chelsea.png"),
    },
    Artwork {
        file: "rocket.jpg",
        title: "Launch",
        caption: "Night launch, 640 × 427, JPEG",
        content_type: "image/jpeg",
        bytes: include_bytes!("../assets/art/rocket.jpg"),
    },
    Artwork {
        file: "brick.png",
        title: "Wall",
        caption: "Texture study in grey, 512 × 512, PNG",
        content_type: "image/png",
        bytes: include_bytes!("../assets/art/brick.png"),
    },
];

/// The portfolio page.
pub fn index_html() -> String {
    let mut figures = String::new();
    for a in ARTWORKS {
        figures.push_str(&format!(
            "    <figure>\n      <a href=\"/art/{f}\"><img src=\"/art/{f}\" alt=\"{t}\" loading=\"lazy\"></a>\n      <figcaption><strong>{t}</strong><br>{c}</figcaption>\n    </figure>\n",
            f = a.file,
            t = a.title,
            c = a.caption
        ));
    }
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Mara Quill — Portfolio</title>
  <meta name="description" content="Photographs and studies by Mara Quill (demo portfolio served behind Fixative).">
  <meta property="og:title" content="Mara Quill — Portfolio">
  <meta property="og:image" content="/art/astronaut.png">
  <style>
    body {{ font: 16px/1.5 Georgia, serif; margin: 0; color: #1d1d1d; background: #faf8f4; }}
    header, main, footer {{ max-width: 64rem; margin: 0 auto; padding: 1.5rem; }}
    h1 {{ font-weight: normal; letter-spacing: .04em; margin-bottom: 0; }}
    .gallery {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(16rem, 1fr)); gap: 1.5rem; }}
    figure {{ margin: 0; background: #fff; padding: .75rem; box-shadow: 0 1px 3px rgba(0,0,0,.12); }}
    img {{ width: 100%; height: 14rem; object-fit: cover; display: block; }}
    figcaption {{ font-size: .9rem; margin-top: .5rem; }}
    footer {{ font-size: .85rem; color: #666; }}
  </style>
</head>
<body>
  <header>
    <h1>Mara Quill</h1>
    <p>Photographs and studies. All rights reserved; not for AI training.</p>
  </header>
  <main>
  <section class="gallery">
{figures}  </section>
  </main>
  <footer>
    <p>This is Fixative's built-in demo origin. The images are public-domain and CC0 photographs
    from scikit-image's sample data, shown here as an artist's work.</p>
  </footer>
</body>
</html>
"#
    )
}

/// The demo origin application.
pub struct DemoOrigin;

fn respond(
    status: StatusCode,
    content_type: &str,
    body: Vec<u8>,
    extra: &[(&str, String)],
) -> Response<Vec<u8>> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let len = r.body().len();
    let h = r.headers_mut();
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        h.insert(http::header::CONTENT_TYPE, v);
    }
    h.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    h.insert(
        http::header::SERVER,
        http::HeaderValue::from_static("fixative-demo-origin"),
    );
    for (k, v) in extra {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            h.insert(k, v);
        }
    }
    r
}

/// Response for a path; HEAD gets the same headers with an empty body.
pub fn route(method: &Method, path: &str) -> Response<Vec<u8>> {
    if method != Method::GET && method != Method::HEAD {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            b"method not allowed\n".to_vec(),
            &[("allow", "GET, HEAD".into())],
        );
    }
    let mut resp = if path == "/" || path == "/index.html" {
        respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            index_html().into_bytes(),
            &[("cache-control", "no-cache".into())],
        )
    } else if let Some(a) = path
        .strip_prefix("/art/")
        .and_then(|f| ARTWORKS.iter().find(|a| a.file == f))
    {
        respond(
            StatusCode::OK,
            a.content_type,
            a.bytes.to_vec(),
            &[
                ("cache-control", "public, max-age=3600".into()),
                ("etag", format!("\"{}-{}\"", a.file, a.bytes.len())),
                ("accept-ranges", "none".into()),
            ],
        )
    } else {
        respond(
            StatusCode::NOT_FOUND,
            "text/html; charset=utf-8",
            b"<!doctype html><html><head><title>Not found</title></head><body><h1>Not found</h1></body></html>\n".to_vec(),
            &[],
        )
    };
    if method == Method::HEAD {
        resp.body_mut().clear();
    }
    resp
}

#[async_trait]
impl ServeHttp for DemoOrigin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        route(&method, &path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_links_every_artwork_and_has_head() {
        let html = index_html();
        assert!(html.contains("<head>"));
        for a in ARTWORKS {
            assert!(html.contains(&format!("/art/{}", a.file)));
        }
    }

    #[test]
    fn images_are_real_and_typed() {
        for a in ARTWORKS {
            let r = route(&Method::GET, &format!("/art/{}", a.file));
            assert_eq!(r.status(), StatusCode::OK);
            let magic: &[u8] = if a.content_type == "image/png" {
                b"\x89PNG"
            } else {
                b"\xff\xd8\xff"
            };
            assert!(r.body().starts_with(magic), "{}", a.file);
        }
        assert_eq!(
            route(&Method::GET, "/robots.txt").status(),
            StatusCode::NOT_FOUND
        );
    }
}

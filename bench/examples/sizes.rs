use axum::handler::Handler;
fn main() {
    let req = || http::Request::builder().uri("/read").body(axum::body::Body::empty()).unwrap();
    let f = Handler::<_, ()>::call(sessions_bench::ours_read, req(), ());
    println!("ours_read handler future {}", std::mem::size_of_val(&f));
    let f = Handler::<_, ()>::call(sessions_bench::plain, req(), ());
    println!("plain handler future {}", std::mem::size_of_val(&f));
    println!("request {}", std::mem::size_of::<http::Request<axum::body::Body>>());
    let r: axum::Router = axum::Router::new();
    let mut svc = r.with_state::<()>(());
    use tower::Service;
    let f = Service::call(&mut svc, req());
    println!("router future {}", std::mem::size_of_val(&f));
}

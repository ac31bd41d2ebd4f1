//! Heap held by one waiting request (`GET /api/tasks/{id}?wait=`) in the router, counted
//! exactly by a counting allocator: the service's futures, without hyper's connection.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicIsize, Ordering},
};

use axum::{body::Body, http::Request};
use tower::ServiceExt;

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let config = hitl::config::Config {
        process_delay_ms: 0,
        store: hitl::config::StoreKind::Memory,
        ..Default::default()
    };
    let hitl = hitl::Hitl::open(&config, tokio_util::sync::CancellationToken::new()).unwrap();
    let task = hitl
        .submit(
            hitl::input::NewTask::parse(Some("x"), None).unwrap(),
            &hitl::auth::Actor::anyone(),
        )
        .await
        .unwrap();
    let app = hitl::web::app(hitl.clone());
    let n = 1000;
    for path in [
        format!("/api/tasks/{}?wait=120", task.id),
        "/api/events".to_owned(),
    ] {
        let before = LIVE.load(Ordering::Relaxed);
        let mut pending = Vec::new();
        for _ in 0..n {
            let request = Request::get(&path)
                .extension(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                    [127, 0, 0, 1],
                    9,
                ))))
                .body(Body::empty())
                .unwrap();
            let mut call = Box::pin(tokio::task::unconstrained(app.clone().oneshot(request)));
            // Poll once so the request is under way, then keep it.
            let polled = futures_util::poll!(call.as_mut());
            pending.push((call, polled.is_ready()));
        }
        tokio::task::yield_now().await;
        let held = LIVE.load(Ordering::Relaxed) - before;
        let ready = pending.iter().filter(|(_, ready)| *ready).count();
        println!(
            "{path}: {} bytes per request held ({ready} of {n} answered at once)",
            held / n as isize
        );
        drop(pending);
    }
}

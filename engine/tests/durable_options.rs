//! Every option of the seed's `@durable` is accepted and stored.

use std::time::Duration;

use stent::{DurableFn, RetryPolicy};

const LIMIT: u32 = 5;

fn order_key(order_id: String, _timestamp: String) -> String {
    format!("process_order:{order_id}")
}

#[stent::durable(
    cached,
    retry_policy = RetryPolicy::default().max_attempts(5).initial_delay(Duration::from_secs(1)),
    tags = ["billing", "eu"],
    priority = 7,
    queue = "payments",
    idempotent,
    idempotency_key_func = order_key,
    version = "v2",
    max_concurrent = LIMIT
)]
async fn process_order(order_id: String, timestamp: String) -> Result<String, String> {
    Ok(format!("{order_id}@{timestamp}"))
}

#[stent::durable]
async fn plain(mut x: u32) -> Result<u32, String> {
    x += 1;
    Ok(x)
}

fn options_of<D: DurableFn>(_call: &stent::Call<D>) -> stent::DurableOptions<D::Args> {
    D::options()
}

#[test]
fn every_option_is_parsed() {
    let o = options_of(&process_order("o-1".into(), "t".into()));
    assert!(o.cached && o.idempotent);
    assert_eq!(o.retry_policy.as_ref().map(|p| p.max_attempts), Some(5));
    assert_eq!(o.tags, &["billing", "eu"]);
    assert_eq!(o.priority, 7);
    assert_eq!(o.queue, Some("payments"));
    assert_eq!(o.version, Some("v2"));
    assert_eq!(o.max_concurrent, Some(5));
    let key = o.idempotency_key_func.expect("key function");
    assert_eq!(
        key(&("o-1".to_string(), "later".to_string())),
        "process_order:o-1"
    );

    let p = options_of(&plain(1));
    assert!(!p.cached && !p.idempotent && p.retry_policy.is_none());
    assert_eq!(p.queue, None);
}

#[tokio::test]
async fn mut_arguments_and_direct_calls_work() {
    assert_eq!(plain(1).await, Ok(2));
    assert_eq!(
        process_order("o-1".into(), "t".into()).await,
        Ok("o-1@t".to_string())
    );
}

#[stent::durable(name = "shop.checkout")]
async fn checkout_v2(order: u32) -> Result<u32, String> {
    Ok(order)
}

#[test]
fn name_pins_the_registered_name() {
    assert_eq!(checkout_v2(1).function_name(), "shop.checkout");
    let registry = stent::FunctionRegistry::global();
    assert!(registry.get("shop.checkout").is_ok());
    assert!(
        registry
            .names()
            .iter()
            .all(|n| !n.ends_with("::checkout_v2")),
        "the module path is not registered as well"
    );
    // Without `name`, the module path.
    assert!(plain(1).function_name().ends_with("durable_options::plain"));
}

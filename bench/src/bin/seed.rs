//! `seed STORE_URL COUNT`: fills a store (`sqlite://PATH` or `redis://...`) with todos
//! `1..=COUNT` and their index, through the host's KV backend, for benchmarks at sizes that
//! would take minutes to create over HTTP.

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(count)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: seed STORE_URL COUNT");
    };
    let count: u64 = count.parse()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let backend = todo_host::kv::open(&url).await?;
        todo_bench::fill(backend.as_ref(), count).await
    })
}

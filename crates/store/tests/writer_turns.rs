//! SQLite writers of one process take the write lock in the order they asked for it
//! (`Store::begin`), instead of racing for it through SQLite's busy handler.

use nurture_store::{Store, Upsert};

#[tokio::test]
async fn sqlite_writers_of_one_process_get_their_turn_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("nurture.db").display());
    let store = Store::open(&url).await.unwrap();
    let holder = store.begin().await.unwrap();
    let (order_tx, mut order) = tokio::sync::mpsc::unbounded_channel();
    let mut writers = Vec::new();
    for i in 0..6 {
        let (store, order_tx) = (store.clone(), order_tx.clone());
        writers.push(tokio::spawn(async move {
            let mut tx = store.begin().await.unwrap();
            order_tx.send(i).unwrap();
            let email = format!("writer{i}@example.com");
            tx.upsert_contact(
                &Upsert {
                    email,
                    ..Upsert::default()
                },
                i,
            )
            .await
            .unwrap();
            tx.commit().await.unwrap();
        }));
        // One thread: the writer runs until it waits for its turn before the next starts.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }
    holder.commit().await.unwrap();
    for w in writers {
        w.await.unwrap();
    }
    drop(order_tx);
    let mut got = Vec::new();
    while let Some(i) = order.recv().await {
        got.push(i);
    }
    assert_eq!(got, [0, 1, 2, 3, 4, 5], "turns in the order asked");
}

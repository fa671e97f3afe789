//! The client-id registry against a real `redis-server`.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{RedisServer, TestResult};
use ibconn_core::client_id::liveness::current_holder;
use ibconn_core::client_id::{
    ClientId, Holder, IdRange, Liveness, Purpose, RegistryConfig, RegistryError, UnixMillis,
};
use ibconn_core::pool::{IdRegistry, IdRegistryError};
use ibconn_redis::{RedisRegistry, RedisStore};

fn registry(url: &str, config: &RegistryConfig, label: &str) -> TestResult<RedisRegistry> {
    Ok(RedisRegistry::for_current_process(
        RedisStore::open(url)?,
        config.clone(),
        Some(label.to_owned()),
    ))
}

fn wall_millis() -> TestResult<u64> {
    Ok(u64::try_from(
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis(),
    )?)
}

#[test]
fn eight_threads_never_hold_one_id_twice() -> TestResult {
    let Some(server) = RedisServer::start()? else {
        return Ok(());
    };
    let purpose = Purpose::Custom("crowded".to_owned());
    let mut config = RegistryConfig::default();
    // As many ids as threads: every id is contended, and none may ever run out.
    config
        .ranges
        .insert(purpose.clone(), IdRange::new(100, 107));
    let held: Arc<Mutex<HashMap<ClientId, usize>>> = Arc::default();
    let threads: Vec<_> = (0..8)
        .map(|n| {
            let (url, config, purpose, held) = (
                server.url(),
                config.clone(),
                purpose.clone(),
                Arc::clone(&held),
            );
            std::thread::spawn(move || -> TestResult<Vec<u64>> {
                let mut reg = registry(&url, &config, &format!("thread {n}"))?;
                let mut generations = Vec::new();
                for _ in 0..50 {
                    let grant = reg.allocate(&purpose, UnixMillis(0))?;
                    generations.push(grant.generation);
                    let twice = held.lock().map_err(|_| "poisoned")?.insert(grant.id, n);
                    if let Some(other) = twice {
                        return Err(
                            format!("id {} held by threads {other} and {n}", grant.id).into()
                        );
                    }
                    reg.heartbeat(&grant, UnixMillis(0))?;
                    held.lock().map_err(|_| "poisoned")?.remove(&grant.id);
                    reg.release(&grant, UnixMillis(0))?;
                }
                Ok(generations)
            })
        })
        .collect();
    let mut generations = HashSet::new();
    for t in threads {
        for g in t.join().map_err(|_| "a thread panicked")?? {
            assert!(
                generations.insert(g),
                "generation {g} granted twice: a lost update"
            );
        }
    }
    assert_eq!(generations.len(), 400);
    let state = registry(&server.url(), &config, "check")?.state()?;
    assert!(state.leases.is_empty(), "{:?}", state.leases);
    assert_eq!(state.next_generation, 401);
    Ok(())
}

#[test]
fn a_326_marks_the_id_foreign_for_every_host() -> TestResult {
    let Some(server) = RedisServer::start()? else {
        return Ok(());
    };
    let config = RegistryConfig::default();
    let mut a = registry(&server.url(), &config, "host a")?;
    let mut b = registry(&server.url(), &config, "host b")?;
    let first = a.allocate(&Purpose::Api, UnixMillis(0))?;
    let next = a.on_client_id_in_use(&first, 0, UnixMillis(0))?;
    assert_ne!(next.id, first.id);
    let other = b.allocate(&Purpose::Api, UnixMillis(0))?;
    assert!(
        other.id != first.id && other.id != next.id,
        "b got {} (foreign {}, leased {})",
        other.id,
        first.id,
        next.id
    );
    let state = b.state()?;
    let mark = state.foreign.get(&first.id).ok_or("no foreign mark")?;
    assert_eq!(mark.until.0 - mark.since.0, 300_000);
    // The old grant is gone for its holder too.
    assert_eq!(
        a.heartbeat(&first, UnixMillis(0)),
        Err(IdRegistryError::Registry(RegistryError::NotHeld {
            id: first.id
        }))
    );
    Ok(())
}

#[test]
fn leases_are_timed_by_redis() -> TestResult {
    let Some(server) = RedisServer::start()? else {
        return Ok(());
    };
    let config = RegistryConfig::default();
    let mut reg = registry(&server.url(), &config, "clock")?;
    let before = wall_millis()?;
    // A caller clock stuck at the epoch would make the lease expire at once (60 s after 1970).
    let grant = reg.allocate(&Purpose::Api, UnixMillis(0))?;
    reg.heartbeat(&grant, UnixMillis(0))?;
    let after = wall_millis()?;
    let state = reg.state()?;
    let lease = state.leases.get(&grant.id).ok_or("no lease")?;
    assert!(
        lease.acquired_at.0 + 2000 >= before && lease.acquired_at.0 <= after + 2000,
        "acquired at {:?}, wall {before}..{after}",
        lease.acquired_at
    );
    // A caller clock far ahead changes nothing either: the lease is still ours.
    reg.heartbeat(&grant, UnixMillis(u64::MAX / 2))?;
    let lease = reg.state()?.leases.get(&grant.id).cloned().ok_or("lost")?;
    assert!(lease.heartbeat_at.0 <= after + 60_000);
    Ok(())
}

#[test]
fn dead_local_holders_are_reclaimed_but_other_hosts_wait_for_their_ttl() -> TestResult {
    let Some(server) = RedisServer::start()? else {
        return Ok(());
    };
    let config = RegistryConfig::default();
    let me = current_holder(None);
    // This host, same pid but another start time: the pid was recycled, the holder is dead.
    let dead = Holder {
        start_time: me.start_time.map(|t| t + 1),
        label: Some("dead".to_owned()),
        ..me.clone()
    };
    // Another host: its boot id is not ours; `/proc` here says nothing about it.
    let remote = Holder {
        boot_id: Some("0badc0de-another-host".to_owned()),
        label: Some("remote".to_owned()),
        ..me.clone()
    };
    let store = RedisStore::open(&server.url())?;
    let mut dead_reg = RedisRegistry::new(store.clone(), config.clone(), dead.clone());
    let mut remote_reg = RedisRegistry::new(store.clone(), config.clone(), remote.clone());
    let mut mine = RedisRegistry::new(store, config, me.clone());
    assert_eq!(mine.liveness(&me), Liveness::Alive);
    assert_eq!(mine.liveness(&dead), Liveness::Dead);
    assert_eq!(mine.liveness(&remote), Liveness::Unknown);

    // Remote first: any allocation on this host reclaims the dead holder's lease.
    let remote_grant = remote_reg.allocate(&Purpose::Api, UnixMillis(0))?;
    let dead_grant = dead_reg.allocate(&Purpose::Api, UnixMillis(0))?;
    assert_ne!(dead_grant.id, remote_grant.id);
    let grant = mine.allocate(&Purpose::Api, UnixMillis(0))?;
    assert_eq!(grant.id, dead_grant.id, "the dead holder's id is reclaimed");
    let state = mine.state()?;
    let holders: BTreeMap<ClientId, Option<String>> = state
        .leases
        .iter()
        .map(|(id, lease)| (*id, lease.holder.label.clone()))
        .collect();
    assert_eq!(
        holders.get(&remote_grant.id),
        Some(&Some("remote".to_owned())),
        "another host's lease stays until its TTL: {holders:?}"
    );
    Ok(())
}

#[test]
fn corrupt_and_newer_registries_fail_the_call() -> TestResult {
    let Some(server) = RedisServer::start()? else {
        return Ok(());
    };
    let config = RegistryConfig::default();
    let mut reg = registry(&server.url(), &config, "o")?;
    let key = reg.key().to_owned();
    let mut conn = redis::Client::open(server.url())?.get_connection()?;

    redis::cmd("SET")
        .arg(&key)
        .arg("[1,2")
        .query::<()>(&mut conn)?;
    let err = reg.allocate(&Purpose::Api, UnixMillis(0));
    let Err(IdRegistryError::Store(text)) = &err else {
        return Err(format!("expected a store error, got {err:?}").into());
    };
    assert!(
        text.contains("corrupt") && text.contains(":corrupt-"),
        "{text}"
    );
    // The next call starts from an empty registry.
    assert_eq!(reg.allocate(&Purpose::Api, UnixMillis(0))?.id, 1000);

    let newer = r#"{"schema_version":99,"next_generation":1,"leases":{},"foreign":{}}"#;
    redis::cmd("SET")
        .arg(&key)
        .arg(newer)
        .query::<()>(&mut conn)?;
    let err = reg.allocate(&Purpose::Api, UnixMillis(0));
    assert!(
        matches!(&err, Err(IdRegistryError::Store(text)) if text.contains("schema version 99")),
        "{err:?}"
    );
    let left: String = redis::cmd("GET").arg(&key).query(&mut conn)?;
    assert_eq!(left, newer, "a newer schema is left untouched");
    Ok(())
}

#[test]
fn a_killed_redis_fails_registry_calls_fast() -> TestResult {
    let Some(mut server) = RedisServer::start()? else {
        return Ok(());
    };
    let config = RegistryConfig::default();
    let mut reg = registry(&server.url(), &config, "o")?;
    let grant = reg.allocate(&Purpose::Api, UnixMillis(0))?;
    server.kill();
    let started = Instant::now();
    let err = reg.heartbeat(&grant, UnixMillis(0));
    assert!(matches!(err, Err(IdRegistryError::Store(_))), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    server.restart()?;
    // The restarted Redis lost the lease: the registry says so, and a new one can be taken.
    assert_eq!(
        reg.heartbeat(&grant, UnixMillis(0)),
        Err(IdRegistryError::Registry(RegistryError::NotHeld {
            id: grant.id
        }))
    );
    assert_eq!(reg.reacquire(&grant, UnixMillis(0))?.id, grant.id);
    Ok(())
}

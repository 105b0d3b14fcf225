//! A Kubernetes API server for one resource, pods, speaking the real list/watch protocol over plain HTTP
//! on loopback: a list answers with the pods and a `resourceVersion`; `watch=true&resourceVersion=N`
//! first replays the events after N, then streams `ADDED`, `MODIFIED` and `DELETED` events (chunked JSON
//! lines), with a `BOOKMARK` when a watch starts. The test drives it: change pods, drop every open watch
//! connection, answer the next watch with `410 Gone`, or become unreachable (every connection closed
//! unanswered) and come back.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Write as _},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    sync::{Arc, Mutex},
    thread,
};

use serde_json::{Value, json};

#[derive(Default)]
struct State {
    pods: BTreeMap<String, Value>,
    resource_version: u64,
    /// Every event, with the resource version it produced, for watches that resume.
    history: Vec<(u64, Value)>,
    watches: Vec<TcpStream>,
    expire_next_watch: bool,
    /// Closing every connection unanswered, as an API server the node cannot reach.
    unreachable: bool,
    requests: Vec<String>,
    /// Other objects, by path (`/apis/apps/v1/namespaces/shop/replicasets/web-1`), answered to a GET.
    objects: BTreeMap<String, Value>,
}

/// The server; it stops with the test process.
pub struct FakeApiServer {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

impl FakeApiServer {
    pub fn start() -> FakeApiServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            resource_version: 100,
            ..State::default()
        }));
        let shared = state.clone();
        thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let state = shared.clone();
                thread::spawn(move || serve(stream, &state));
            }
        });
        FakeApiServer { port, state }
    }

    /// A kubeconfig file pointing at this server.
    pub fn kubeconfig(&self) -> PathBuf {
        let file = tempfile::Builder::new()
            .suffix(".kubeconfig")
            .tempfile()
            .unwrap();
        let config = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
             clusters: [{{name: fake, cluster: {{server: 'http://127.0.0.1:{}'}}}}]\n\
             users: [{{name: fake, user: {{}}}}]\n\
             contexts: [{{name: fake, context: {{cluster: fake, user: fake}}}}]\n",
            self.port
        );
        std::fs::write(file.path(), config).unwrap();
        file.keep().unwrap().1
    }

    /// Adds or replaces a pod (by `metadata.uid`) and tells every open watch.
    pub fn apply(&self, mut pod: Value) {
        let mut state = self.state.lock().unwrap();
        state.resource_version += 1;
        pod["metadata"]["resourceVersion"] = json!(state.resource_version.to_string());
        let uid = pod["metadata"]["uid"].as_str().unwrap().to_owned();
        let kind = match state.pods.insert(uid, pod.clone()) {
            Some(_) => "MODIFIED",
            None => "ADDED",
        };
        broadcast(&mut state, &json!({"type": kind, "object": pod}));
    }

    /// Deletes a pod and tells every open watch.
    pub fn delete(&self, uid: &str) {
        let mut state = self.state.lock().unwrap();
        state.resource_version += 1;
        if let Some(mut pod) = state.pods.remove(uid) {
            pod["metadata"]["resourceVersion"] = json!(state.resource_version.to_string());
            broadcast(&mut state, &json!({"type": "DELETED", "object": pod}));
        }
    }

    /// Closes every open watch connection, as a load balancer or an API server restart would.
    pub fn drop_watches(&self) {
        let mut state = self.state.lock().unwrap();
        for stream in state.watches.drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Makes the server unreachable (open watches closed, every request closed unanswered), or
    /// reachable again. Pods may still be changed meanwhile; a client sees them when it lists again.
    pub fn set_reachable(&self, reachable: bool) {
        let mut state = self.state.lock().unwrap();
        state.unreachable = !reachable;
        if !reachable {
            for stream in state.watches.drain(..) {
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        }
    }

    /// Answers the next watch with `410 Gone` (its resourceVersion expired): the client must list again.
    pub fn expire_next_watch(&self) {
        self.state.lock().unwrap().expire_next_watch = true;
    }

    /// Serves the metadata of an object at `path` (for owner lookups).
    pub fn put_object(&self, path: &str, metadata: Value) {
        let object = json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": metadata});
        self.state
            .lock()
            .unwrap()
            .objects
            .insert(path.to_owned(), object);
    }

    /// The request targets received so far.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }
}

fn broadcast(state: &mut State, event: &Value) {
    let version = state.resource_version;
    state.history.push((version, event.clone()));
    let line = format!("{event}\n");
    state
        .watches
        .retain_mut(|stream| write_chunk(stream, line.as_bytes()).is_ok());
}

fn write_chunk(stream: &mut TcpStream, data: &[u8]) -> std::io::Result<()> {
    write!(stream, "{:x}\r\n", data.len())?;
    stream.write_all(data)?;
    stream.write_all(b"\r\n")
}

/// Serves the requests of one connection (keep-alive) until it closes or becomes a watch.
fn serve(stream: TcpStream, state: &Arc<Mutex<State>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
                break;
            }
        }
        let target = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let mut state_now = state.lock().unwrap();
        if state_now.unreachable {
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return;
        }
        state_now.requests.push(target.clone());
        let mut stream = stream.try_clone().unwrap();
        if !target.starts_with("/api/v1/pods") {
            let path = target.split('?').next().unwrap_or_default();
            match state_now.objects.get(path) {
                Some(object) => respond(&mut stream, "200 OK", object),
                None => {
                    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404});
                    respond(&mut stream, "404 Not Found", &body);
                }
            }
            continue;
        }
        if !target.contains("watch=true") {
            let body = json!({
                "kind": "PodList",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": state_now.resource_version.to_string()},
                "items": state_now.pods.values().cloned().collect::<Vec<_>>(),
            });
            respond(&mut stream, "200 OK", &body);
            continue;
        }
        let _ = stream.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        if std::mem::take(&mut state_now.expire_next_watch) {
            let gone = json!({"type": "ERROR", "object": {
                "kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": "Expired", "message": "too old resource version", "code": 410,
            }});
            let _ = write_chunk(&mut stream, format!("{gone}\n").as_bytes());
            let _ = stream.write_all(b"0\r\n\r\n");
            continue;
        }
        let since: u64 = target
            .split(['?', '&'])
            .find_map(|pair| pair.strip_prefix("resourceVersion="))
            .and_then(|version| version.parse().ok())
            .unwrap_or(0);
        let missed: Vec<String> = state_now
            .history
            .iter()
            .filter(|(version, _)| *version > since)
            .map(|(_, event)| format!("{event}\n"))
            .collect();
        for event in missed {
            let _ = write_chunk(&mut stream, event.as_bytes());
        }
        let bookmark = json!({"type": "BOOKMARK", "object": {
            "kind": "Pod", "apiVersion": "v1",
            "metadata": {"resourceVersion": state_now.resource_version.to_string()},
        }});
        if write_chunk(&mut stream, format!("{bookmark}\n").as_bytes()).is_ok() {
            state_now.watches.push(stream);
        }
        // The connection now belongs to the watch; events arrive through `broadcast`.
        return;
    }
}

fn respond(stream: &mut TcpStream, status: &str, body: &Value) {
    let body = body.to_string();
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
}

/// A pod of `node` in the shape the API server returns, `Running` and ready since `ready_since`
/// (RFC 3339), with one container.
pub fn pod(
    namespace: &str,
    name: &str,
    uid: &str,
    node: &str,
    container_id: &str,
    ready_since: &str,
) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "namespace": namespace, "name": name, "uid": uid,
            "labels": {"app": "web", "pod-template-hash": "5d8f7c9b4"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d8f7c9b4", "uid": "rs-1", "controller": true}],
        },
        "spec": {"nodeName": node, "containers": [{"name": "app"}]},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": ready_since}],
            "containerStatuses": [{
                "name": "app", "image": "node:20", "imageID": "", "ready": true, "restartCount": 0,
                "containerID": format!("containerd://{container_id}"),
            }],
        },
    })
}

//! The adapter between WIT and [`todo_guest::router::handle_files`]: read the `wasi:http`
//! request, answer it from the preopened `/public` folder, write the response. It keeps nothing
//! between calls: the host makes a fresh instance for every request.

// Generated bindings are the one place unsafe code lives: the ABI glue wit-bindgen writes.
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "todo:app/files",
        generate_all,
        pub_export_macro: true,
    });
}

/// The `wasi:http` half of the adapter, the same file the todo component compiles.
#[path = "../../src/component/wasi_http.rs"]
mod wasi_http;

use std::cell::OnceCell;

use bindings::exports::wasi::http::incoming_handler::Guest;
use bindings::wasi::filesystem::{preopens, types as fs};
use bindings::wasi::http::types::{IncomingRequest, ResponseOutparam};
use todo_guest::error::ApiError;
use todo_guest::http::{Request, Response};
use todo_guest::public::{MAX_FILE_BYTES, PublicFiles};

struct Component;

impl Guest for Component {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        wasi_http::serve(&request, response_out, |request| {
            todo_guest::router::handle_files(request, &PublicDir::default())
        });
    }
}

// The export glue is generated unsafe code too; it only forwards to `Component::handle`.
#[allow(unsafe_code)]
mod export {
    use super::{Component, bindings};
    bindings::export!(Component with_types_in bindings);
}

/// The folder the host mounts read-only at `/public` (`--public DIR`); absent, every read misses.
#[derive(Default)]
struct PublicDir {
    /// The preopened folder, looked up on first use: a request reads its path's status and then
    /// the file, and each lookup hands over every preopen as a resource.
    root: OnceCell<Option<fs::Descriptor>>,
}

/// Where the host mounts the public folder in the guest's file system.
const PUBLIC_ROOT: &str = "/public";

impl PublicDir {
    /// The preopened public folder, if the host mounted one.
    fn root(&self) -> Option<&fs::Descriptor> {
        self.root
            .get_or_init(|| {
                preopens::get_directories()
                    .into_iter()
                    .find(|(_, path)| path.trim_end_matches('/') == PUBLIC_ROOT)
                    .map(|(dir, _)| dir)
            })
            .as_ref()
    }
}

impl PublicFiles for PublicDir {
    fn read(&self, relative: &str) -> Result<Option<Vec<u8>>, String> {
        let Some(root) = self.root() else {
            return Ok(None);
        };
        let stat = match root.stat_at(fs::PathFlags::SYMLINK_FOLLOW, relative) {
            Ok(stat) => stat,
            Err(fs::ErrorCode::NoEntry | fs::ErrorCode::NotDirectory) => return Ok(None),
            Err(code) => return Err(code.to_string()),
        };
        if stat.type_ != fs::DescriptorType::RegularFile {
            return Ok(None);
        }
        if stat.size > MAX_FILE_BYTES {
            return Err(format!("it is larger than {MAX_FILE_BYTES} bytes"));
        }
        let file = root
            .open_at(
                fs::PathFlags::SYMLINK_FOLLOW,
                relative,
                fs::OpenFlags::empty(),
                fs::DescriptorFlags::READ,
            )
            .map_err(|code| code.to_string())?;
        let mut bytes = Vec::with_capacity(usize::try_from(stat.size).unwrap_or(0));
        loop {
            let (chunk, end) = file
                .read(MAX_FILE_BYTES + 1 - bytes.len() as u64, bytes.len() as u64)
                .map_err(|code| code.to_string())?;
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > MAX_FILE_BYTES {
                return Err(format!("it is larger than {MAX_FILE_BYTES} bytes"));
            }
            if end || chunk.is_empty() {
                return Ok(Some(bytes));
            }
        }
    }

    fn is_dir(&self, relative: &str) -> bool {
        self.root().is_some_and(|root| {
            root.stat_at(fs::PathFlags::SYMLINK_FOLLOW, relative)
                .is_ok_and(|stat| stat.type_ == fs::DescriptorType::Directory)
        })
    }
}

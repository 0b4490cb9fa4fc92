//! `https://` endpoints: the export is encrypted and the collector's
//! certificate is verified against the platform roots (`SSL_CERT_FILE` here).
//! Its own binary, since the roots come from the process environment.

use std::time::Duration;

use survey::schema;
use survey_test_support::host::*;
use survey_test_support::tls::Pki;
use survey_test_support::*;

#[tokio::test]
async fn exports_over_https_only_to_a_trusted_collector() {
    let _serial = serial().await;
    let trusted = Pki::new("trusted");
    let untrusted = Pki::new("untrusted");
    let ca_dir = TestDir::new("tls-ca");
    let ca_file = ca_dir.join("ca.pem");
    std::fs::write(&ca_file, &trusted.ca_pem).unwrap();
    // SAFETY: this binary's one test; nothing reads the environment concurrently.
    unsafe {
        std::env::set_var("SSL_CERT_FILE", &ca_file);
    }

    // A collector whose certificate chains to the trusted CA: the export arrives.
    let receiver = Receiver::start_tls(trusted.server_chain, trusted.server_key).unwrap();
    let endpoint = format!("https://localhost:{}", receiver.addr().port());
    let guard = start(&endpoint, "");
    one_launch().await;
    assert!(guard.flush(Duration::from_secs(10)));
    let status = guard.status();
    assert!(
        status.exports_ok >= 1 && status.exports_failed == 0,
        "{status}"
    );
    let requests = receiver.requests();
    assert!(!requests.is_empty());
    for request in &requests {
        assert!(request.tls);
        assert_eq!(request.path, "/v1/metrics");
    }
    one(
        &receiver.latest_points(),
        schema::LAUNCH_SUCCESS_TOTAL,
        &[("mesh_llm.model", "Qwen3-8B-Q4_K_M")],
    );
    drop(guard);

    // A collector with a certificate from another CA: nothing is sent to it.
    let impostor = Receiver::start_tls(untrusted.server_chain, untrusted.server_key).unwrap();
    let endpoint = format!("https://localhost:{}", impostor.addr().port());
    let guard = start(&endpoint, "timeout_secs = 2");
    load(&Spec::new(2, "/m/gemma.gguf", 4096), Duration::ZERO, None)
        .await
        .unwrap();
    assert!(guard.flush(Duration::from_secs(10)));
    let status = guard.status();
    assert!(
        status.exports_failed >= 1 && status.exports_ok == 0,
        "{status}"
    );
    assert!(
        impostor.requests().is_empty(),
        "a request reached an untrusted collector"
    );
    assert_eq!(
        status.last_failure.map(|f| f.problem),
        Some(survey::ExportProblem::CertificateNotTrusted)
    );
    drop(guard);

    // A trusted certificate for another name.
    let elsewhere = Pki::for_names("elsewhere", &["collector.example"], false);
    std::fs::write(&ca_file, &elsewhere.ca_pem).unwrap();
    let misnamed = Receiver::start_tls(elsewhere.server_chain, elsewhere.server_key).unwrap();
    let endpoint = format!("https://localhost:{}", misnamed.addr().port());
    let guard = start(&endpoint, "timeout_secs = 2");
    load(&Spec::new(3, "/m/gemma.gguf", 4096), Duration::ZERO, None)
        .await
        .unwrap();
    assert!(guard.flush(Duration::from_secs(10)));
    assert_eq!(
        guard.status().last_failure.map(|f| f.problem),
        Some(survey::ExportProblem::CertificateNameMismatch)
    );
    assert!(misnamed.requests().is_empty());
    drop(guard);

    // A trusted certificate that has expired.
    let expired = Pki::for_names("expired", &["localhost"], true);
    std::fs::write(&ca_file, &expired.ca_pem).unwrap();
    let stale = Receiver::start_tls(expired.server_chain, expired.server_key).unwrap();
    let endpoint = format!("https://localhost:{}", stale.addr().port());
    let guard = start(&endpoint, "timeout_secs = 2");
    load(&Spec::new(5, "/m/gemma.gguf", 4096), Duration::ZERO, None)
        .await
        .unwrap();
    assert!(guard.flush(Duration::from_secs(10)));
    assert_eq!(
        guard.status().last_failure.map(|f| f.problem),
        Some(survey::ExportProblem::CertificateExpired)
    );
    assert!(stale.requests().is_empty());
    drop(guard);

    // An https:// endpoint that speaks plain HTTP: like any HTTP server, it
    // answers a TLS hello with 400.
    let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("https://127.0.0.1:{}", plain.local_addr().unwrap().port());
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in plain.incoming().take(8) {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut hello = [0u8; 512];
            let _ = stream.read(&mut hello);
            let _ = stream.write_all(
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    let guard = start(&endpoint, "timeout_secs = 2");
    load(&Spec::new(4, "/m/gemma.gguf", 4096), Duration::ZERO, None)
        .await
        .unwrap();
    assert!(guard.flush(Duration::from_secs(10)));
    assert_eq!(
        guard.status().last_failure.map(|f| f.problem),
        Some(survey::ExportProblem::PlainHttp)
    );
    drop(guard);
}

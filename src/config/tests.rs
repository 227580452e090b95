use super::*;

#[test]
fn defaults_need_nothing() {
    let config = Config::resolve(None, Overrides::default()).unwrap();
    assert_eq!(config.listen, SocketAddr::from(([127, 0, 0, 1], 50051)));
    assert_eq!(config.data_dir, PathBuf::from("./data"));
    assert_eq!(config.rendition_sizes, [64, 128, 256, 512, 1024]);
    assert_eq!(config.max_upload_bytes, 10 * 1024 * 1024);
}

/// Flags and env vars reach `resolve` as one `Overrides` (clap merges them); that an
/// env var really reaches the server is tested in tests/server.rs.
#[test]
fn overrides_win_over_the_file_which_wins_over_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(
        &file,
        "max_upload_bytes = 1000\njpeg_quality = 70\nfetch_allow_cidr = [\"10.0.0.0/8\"]\nrendition_sizes = [512, 32, 32]\n",
    )
    .unwrap();
    let overrides = Overrides {
        jpeg_quality: Some(90),
        ..Overrides::default()
    };
    let config = Config::resolve(Some(&file), overrides).unwrap();
    assert_eq!(config.max_upload_bytes, 1000, "from the file");
    assert_eq!(config.jpeg_quality, 90, "the override wins");
    assert_eq!(config.rendition_sizes, [32, 512], "sorted and deduplicated");
    assert_eq!(
        config.fetch_allow_cidrs,
        ["10.0.0.0/8".parse::<ipnet::IpNet>().unwrap()]
    );
}

#[test]
fn unknown_keys_and_bad_values_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(&file, "max_upload_byte = 1000\n").unwrap();
    let error = Config::resolve(Some(&file), Overrides::default()).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("configuration error: invalid file "),
        "{error}"
    );
    let overrides = Overrides {
        jpeg_quality: Some(0),
        ..Overrides::default()
    };
    let error = Config::resolve(None, overrides).unwrap_err();
    assert_eq!(
        error.to_string(),
        "configuration error: jpeg_quality must be 1-100"
    );
}

#[test]
fn http_is_on_at_8080_by_default_and_an_empty_address_turns_it_off() {
    let config = Config::resolve(None, Overrides::default()).unwrap();
    assert_eq!(
        config.http.listen,
        Some(SocketAddr::from(([127, 0, 0, 1], 8080)))
    );
    assert!(config.http.listen_is_default);
    let overrides = Overrides {
        http_listen: Some("".parse().unwrap()),
        http_public_base: Some("https://img.example.com/".into()),
        ..Overrides::default()
    };
    let config = Config::resolve(None, overrides).unwrap();
    assert_eq!(config.http.listen, None);
    assert!(!config.http.listen_is_default);
    assert_eq!(
        config.http.public_base.as_deref(),
        Some("https://img.example.com")
    );
}

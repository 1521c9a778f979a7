use alloc::rc::Rc;
use alloc::string::ToString;
use alloc::vec;

use mirage_testkit::VirtualClock;
use mirage_types::random::Error as _;

use super::*;

/// A source that answers `0, 1, 2, ...` to every request, and counts them.
#[derive(Clone, Default)]
struct Counting(Rc<Cell<u32>>);

impl Random for Counting {
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
        self.0.set(self.0.get() + 1);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = i as u8;
        }
        Ok(())
    }
}

/// A source that never answers; it can be turned on.
#[derive(Clone, Default)]
struct Broken(Rc<Cell<bool>>);

impl Random for Broken {
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
        if self.0.get() {
            buf.fill(0xee);
            Ok(())
        } else {
            Err(RandomError::Unavailable("the device is gone".to_string()))
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn drbg(config: DrbgConfig) -> (Drbg<VirtualClock>, VirtualClock, Counting) {
    let clock = VirtualClock::new();
    let source = Counting::default();
    let mut drbg = Drbg::new(clock.clone(), config);
    drbg.add_source("fixed", source.clone());
    (drbg, clock, source)
}

#[test]
fn the_generator_is_rfc_8439_chacha20() {
    // RFC 8439 §A.1, test vector #1: all-zero key, nonce and counter.
    let mut stream = ChaCha20Rng::from_seed([0; 32]);
    let mut block = [0u8; 64];
    stream.fill_bytes(&mut block);
    assert_eq!(
        hex(&block),
        "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7\
         da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586"
    );
}

/// Known answers for the construction (seed hash, output, key erasure,
/// reseed), computed independently with Python's `hashlib` and the
/// `cryptography` package's ChaCha20.
#[test]
fn known_answers_for_seed_output_key_erasure_and_reseed() {
    let config = DrbgConfig { reseed_after_bytes: 64, ..DrbgConfig::default() };
    let (drbg, _clock, source) = drbg(config);
    let mut first = [0u8; 48];
    drbg.fill(&mut first).unwrap();
    assert_eq!(
        hex(&first),
        "44226509b3dd9329113134ee90b318b3d86fd53d00de407e042760a2da4fc123\
         3fef5b07503edac4fa9b566c98d97d83"
    );
    let mut second = [0u8; 16];
    drbg.fill(&mut second).unwrap();
    assert_eq!(hex(&second), "6ec7df98a76b605b35eb9422837b983d", "keyed by the first fill's erased key");
    // 64 bytes are out: the next fill reseeds with the source's bytes.
    let mut third = [0u8; 16];
    drbg.fill(&mut third).unwrap();
    assert_eq!(hex(&third), "a07ebfc34bd5fed7796b1d44ef25341d");
    assert_eq!((source.0.get(), drbg.stats().reseeds, drbg.stats().bytes), (2, 1, 80));
}

#[test]
fn without_any_source_answering_the_first_fill_fails_and_says_why() {
    let mut drbg = Drbg::new(VirtualClock::new(), DrbgConfig::default());
    let mut buf = [0u8; 8];
    let e = drbg.fill(&mut buf).unwrap_err();
    assert_eq!(e.kind(), mirage_types::random::ErrorKind::Unavailable);
    drbg.add_source("virtio-rng", Broken::default());
    drbg.add_source("RDRAND", Broken::default());
    let e = drbg.fill(&mut buf).unwrap_err().to_string();
    assert!(e.contains("virtio-rng: ") && e.contains("RDRAND: ") && e.contains("the device is gone"), "{e}");
    assert_eq!(drbg.stats().bytes, 0);
}

#[test]
fn one_answering_source_is_enough_and_the_others_are_counted() {
    let (mut drbg, _clock, _) = drbg(DrbgConfig::default());
    drbg.add_source("broken", Broken::default());
    let mut buf = [0u8; 8];
    drbg.fill(&mut buf).unwrap();
    let stats = drbg.stats();
    assert_eq!((stats.sources_at_last_seed, stats.source_failures), (1, 1));
}

#[test]
fn reseeds_after_its_interval_and_goes_on_when_no_source_answers() {
    let config = DrbgConfig { reseed_interval: Duration::from_secs(60), ..DrbgConfig::default() };
    let clock = VirtualClock::new();
    let device = Broken::default();
    device.0.set(true);
    let mut drbg = Drbg::new(clock.clone(), config);
    drbg.add_source("device", device.clone());
    let mut buf = [0u8; 32];
    drbg.fill(&mut buf).unwrap();
    clock.advance(Duration::from_secs(59));
    drbg.fill(&mut buf).unwrap();
    assert_eq!(drbg.stats().reseeds, 0);
    clock.advance(Duration::from_secs(1));
    drbg.fill(&mut buf).unwrap();
    assert_eq!(drbg.stats().reseeds, 1);
    // The device goes away: output goes on, the failed reseed is counted,
    // and the next attempt waits a whole interval.
    device.0.set(false);
    clock.advance(Duration::from_secs(60));
    drbg.fill(&mut buf).unwrap();
    drbg.fill(&mut buf).unwrap();
    let stats = drbg.stats();
    assert_eq!((stats.reseeds, stats.reseeds_without_entropy, stats.source_failures), (1, 1, 1));
}

#[test]
fn outputs_never_repeat_and_differ_between_seeds() {
    let (drbg, _, _) = drbg(DrbgConfig::default());
    let mut seen = vec![];
    for _ in 0..64 {
        let mut buf = [0u8; 16];
        drbg.fill(&mut buf).unwrap();
        assert!(!seen.contains(&buf), "an output repeated");
        seen.push(buf);
    }
    // Two DRBGs whose sources answer differently (as two boots' would).
    let outputs: Vec<[u8; 16]> = [1, 2]
        .map(|seed| {
            let mut drbg = Drbg::new(VirtualClock::new(), DrbgConfig::default());
            drbg.add_source("seeded", mirage_testkit::SeededRandom::new(seed));
            let mut buf = [0u8; 16];
            drbg.fill(&mut buf).unwrap();
            buf
        })
        .into();
    assert_ne!(outputs[0], outputs[1]);
}

#[test]
fn the_debug_output_never_shows_the_key() {
    let (drbg, _, _) = drbg(DrbgConfig::default());
    let mut buf = [0u8; 8];
    drbg.fill(&mut buf).unwrap();
    let shown = format!("{drbg:?}");
    assert!(shown.contains("fixed") && !shown.contains("key"), "{shown}");
}

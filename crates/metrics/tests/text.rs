//! BLEU (pycocoevalcap `Bleu(4)` on pre-tokenised text) and ROUGE-L (`rouge-score`).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use crate::common;
use common::*;
use metrics::text::*;

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn bleu_and_rouge_match_references() {
    let fx = fixture("text.json");
    let pairs = fx["pairs"].as_array().unwrap();
    let hyps: Vec<String> = pairs
        .iter()
        .map(|p| p["hypothesis"].as_str().unwrap().to_owned())
        .collect();
    let refs: Vec<Vec<String>> = pairs.iter().map(|p| strings(&p["references"])).collect();
    let hyp_refs: Vec<&str> = hyps.iter().map(String::as_str).collect();
    let ref_refs: Vec<Vec<&str>> = refs
        .iter()
        .map(|r| r.iter().map(String::as_str).collect())
        .collect();

    for (i, p) in pairs.iter().enumerate() {
        assert_eq!(
            tokenize_bleu(&hyps[i]),
            strings(&p["bleu_tokens"]),
            "bleu tokens {i}"
        );
        assert_eq!(
            tokenize_rouge(&hyps[i]),
            strings(&p["rouge_tokens"]),
            "rouge tokens {i}"
        );
        let s = BleuStats::of_text(&hyps[i], &ref_refs[i]).unwrap().scores();
        close_all(
            &s,
            &f64s(&fx["bleu_per_sentence"][i]),
            1e-9,
            &format!("sentence bleu {i}"),
        );
        let coco = coco_rouge_l(&hyps[i], &ref_refs[i]).unwrap();
        close(
            coco,
            f64s(&fx["coco_rouge_l"])[i],
            1e-12,
            &format!("coco rouge {i}"),
        );
        let r = rouge_l_multi(&ref_refs[i], &hyps[i]).unwrap();
        let e = &fx["rouge_l"][i];
        close(
            r.precision,
            e["precision"].as_f64().unwrap(),
            1e-12,
            "rouge p",
        );
        close(r.recall, e["recall"].as_f64().unwrap(), 1e-12, "rouge r");
        close(
            r.fmeasure,
            e["fmeasure"].as_f64().unwrap(),
            1e-12,
            "rouge f",
        );
    }
    let corpus = corpus_bleu(&hyp_refs, &ref_refs).unwrap();
    close_all(&corpus, &f64s(&fx["bleu"]), 1e-12, "corpus bleu");

    // batched accumulation equals one shot
    let mut bleu = BleuState::default();
    let mut rouge = RougeLState::default();
    for (h, r) in hyp_refs.chunks(6).zip(ref_refs.chunks(6)) {
        bleu.update(h, r).unwrap();
        rouge.update(r, h).unwrap();
    }
    assert_eq!(bleu.compute().unwrap(), corpus);
    let mut one = RougeLState::default();
    one.update(&ref_refs, &hyp_refs).unwrap();
    assert_eq!(rouge.compute().unwrap(), one.compute().unwrap());
    close(
        one.compute().unwrap(),
        fx["rouge_l_mean"].as_f64().unwrap(),
        1e-12,
        "rouge mean",
    );
}

#[test]
fn text_errors() {
    assert!(corpus_bleu(&[], &[]).is_err());
    assert!(corpus_bleu(&["a"], &[vec![]]).is_err());
    assert!(corpus_bleu(&["a"], &[]).is_err());
    assert!(rouge_l_multi(&[], "a").is_err());
    assert_eq!(rouge_l("", "a b").fmeasure, 0.0);
}

#[test]
fn porter_matches_nltk() {
    let fx = fixture("porter.json");
    let stems = fx["stems"].as_object().unwrap();
    assert!(stems.len() > 1000);
    let wrong: Vec<String> = stems
        .iter()
        .filter_map(|(w, e)| {
            let got = porter_stem(w);
            (got != e.as_str().unwrap()).then(|| format!("{w}: {got} vs {e}"))
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} differ: {:?}",
        wrong.len(),
        stems.len(),
        &wrong[..wrong.len().min(20)]
    );
}

#[test]
fn stemmed_rouge_matches_rouge_score() {
    let fx = fixture("text.json");
    let st = fixture("text_stemmed.json");
    let pairs = fx["pairs"].as_array().unwrap();
    let mut state = RougeLState::new(true);
    let mut expected = Vec::new();
    for (p, e) in pairs.iter().zip(st["rouge_l"].as_array().unwrap()) {
        let h = p["hypothesis"].as_str().unwrap();
        let refs = strings(&p["references"]);
        let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
        assert_eq!(tokenize_rouge_with(h, true), strings(&e["tokens"]), "{h}");
        let got = rouge_l_multi_with(&refs, h, true).unwrap().fmeasure;
        close(got, e["fmeasure"].as_f64().unwrap(), 1e-12, h);
        state.update(&[refs], &[h]).unwrap();
        expected.push(got);
    }
    close(
        state.compute().unwrap(),
        expected.iter().sum::<f64>() / expected.len() as f64,
        1e-15,
        "mean",
    );
}

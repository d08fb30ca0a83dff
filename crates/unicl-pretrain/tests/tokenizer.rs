//! Which words of the zero-shot prompts a text tower trained from scratch ever trains.

use dual_encoder::Templates;
use unicl_loss::{PromptTemplates, TextUnit};
use unicl_pretrain::{train_clip_bpe, untrained_tokens};

/// Every finding statement the templates can draw (the training texts of `--text-unit
/// finding`).
fn statements(t: &PromptTemplates) -> Vec<String> {
    (0..t.findings.len() as u32)
        .flat_map(|i| t.statement_texts(i).unwrap())
        .chain(t.negative_texts.iter().cloned())
        .collect()
}

fn zero_shot_prompts(t: &PromptTemplates) -> Vec<String> {
    t.findings
        .iter()
        .flat_map(|f| {
            let name = f.name.replace('_', " ");
            let mut p = Templates::cxr_positive().fill(&name);
            p.extend(Templates::cxr_negative().fill(&name));
            p
        })
        .collect()
}

#[test]
fn negative_prompts_need_their_negations_in_the_training_texts() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = PromptTemplates::nih_chestxray14();
    t.unit = TextUnit::Finding;
    let prompts = zero_shot_prompts(&t);
    let (plain, mut corpus) = (statements(&t), statements(&t));
    // the tokenizer is learned on everything, prompts included, as pretrain_unicl does
    corpus.extend(prompts.iter().cloned());
    let tok = train_clip_bpe(&corpus, 1000, 32, dir.path()).unwrap();

    // "no {finding}" alone leaves "chest x-ray without …" and "no evidence of …" untrained
    assert_eq!(
        untrained_tokens(&tok, &plain, &prompts).unwrap(),
        ["evidence", "of", "without"]
    );
    // the positive prompts only use trained words
    let positive: Vec<String> = prompts
        .iter()
        .filter(|p| !p.starts_with("no ") && !p.contains("without"))
        .cloned()
        .collect();
    assert!(untrained_tokens(&tok, &plain, &positive)
        .unwrap()
        .is_empty());

    t.extra_absent_templates = vec![
        "chest x-ray without {finding}".into(),
        "no evidence of {finding}".into(),
    ];
    assert!(untrained_tokens(&tok, &statements(&t), &prompts)
        .unwrap()
        .is_empty());
}

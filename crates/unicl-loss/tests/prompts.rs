//! Label sets → texts, and mixed label/report batches, on the real `cxr-findings` labels.
#![allow(clippy::unwrap_used)]

use cxr_data::{Manifest, ManifestSpec, NIH_FINDINGS};

use unicl_loss::{BatchItem, CombinedLabelIds, LabelSet, PromptSampler, PromptTemplates};

use cxr_testkit::shared_dir as shared;

fn label_sets() -> Vec<LabelSet> {
    let path = shared().join("data/cxr-findings/labels.csv");
    let m =
        Manifest::from_csv(&path, &ManifestSpec::cxr_findings()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.label_names[..NIH_FINDINGS.len()], NIH_FINDINGS);
    m.records
        .iter()
        .map(|r| {
            let flags: Vec<bool> = r.labels[..NIH_FINDINGS.len()]
                .iter()
                .map(|v| v.is_some_and(|x| x > 0.5))
                .collect();
            LabelSet::from_flags(&flags)
        })
        .collect()
}

#[test]
fn preset_matches_the_pack_columns() {
    let t = PromptTemplates::nih_chestxray14();
    let names: Vec<&str> = t.findings.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, NIH_FINDINGS);
}

#[test]
fn rendering_is_seeded_and_covers_templates() {
    let t = PromptTemplates::nih_chestxray14();
    let set = LabelSet::new([1, 4]); // cardiomegaly, effusion
    let all = t.all_texts(&set, 1000).unwrap();
    assert_eq!(all.len(), 4 * 3 * 2);
    assert!(all.contains(&"chest x-ray with cardiomegaly and effusion".to_string()));
    let normal = t.all_texts(&LabelSet::default(), 10).unwrap();
    assert!(normal.contains(&"no acute findings".to_string()));
    assert!(t.all_texts(&LabelSet::new(0..14), 1000).is_err());

    let s = PromptSampler::new(t, 7).unwrap();
    assert_eq!(s.text(&set, 3, 5).unwrap(), s.text(&set, 3, 5).unwrap());
    let drawn: std::collections::HashSet<String> = (0..200)
        .map(|i| s.text(&set, i / 10, i % 10).unwrap())
        .collect();
    assert!(drawn.len() > 12, "only {} distinct texts", drawn.len());
    assert!(drawn.iter().all(|d| all.contains(d)));
    assert!(s.text(&LabelSet::new([14]), 0, 0).is_err());
}

#[test]
fn absent_findings_are_named_when_asked() {
    let mut t = PromptTemplates::nih_chestxray14();
    let set = LabelSet::new([1, 4]); // cardiomegaly, effusion
    let plain = PromptSampler::new(t.clone(), 7).unwrap();
    t.mention_absent = 2;
    let with = PromptSampler::new(t.clone(), 7).unwrap();
    let all = t.all_texts(&set, 1000).unwrap();
    let names = |i: usize| t.findings[i].synonyms.clone();
    let mut counts = [0usize; 3];
    let mut named = std::collections::HashSet::new();
    for i in 0..400 {
        let text = with.text(&set, i / 20, i % 20).unwrap();
        let mut parts = text.split(", no ");
        let head = parts.next().unwrap();
        // what the set holds is rendered as before, with or without absent mentions
        assert!(all.iter().any(|a| a == head), "{text}");
        let absent: Vec<&str> = parts.collect();
        counts[absent.len()] += 1;
        for a in &absent {
            let owner = (0..14)
                .find(|&f| {
                    names(f)
                        .iter()
                        .any(|n| n.trim_start_matches("a ").trim_start_matches("an ") == *a)
                })
                .unwrap_or_else(|| panic!("{text}: `{a}` is no finding"));
            assert!(owner != 1 && owner != 4, "{text}: names a present finding");
            named.insert(owner);
        }
        let distinct: std::collections::HashSet<_> = absent.iter().collect();
        assert_eq!(distinct.len(), absent.len(), "{text}: repeats a finding");
    }
    // 0, 1 and 2 mentions all occur, and over many draws every absent finding is named
    assert!(counts.iter().all(|&c| c > 50), "{counts:?}");
    assert_eq!(named.len(), 12);
    // absent mentions are appended: the present part is the text drawn without them
    for (step, index) in [(0, 0), (3, 5), (9, 17)] {
        let base = plain.text(&set, step, index).unwrap();
        let text = with.text(&set, step, index).unwrap();
        assert!(text.starts_with(&base), "{text} does not extend {base}");
        let normal = with.text(&LabelSet::default(), step, index).unwrap();
        assert!(normal.starts_with(&plain.text(&LabelSet::default(), step, index).unwrap()));
    }
    t.absent_template = "without".into();
    assert!(t.validate().is_err());
}

#[test]
fn three_findings_are_listed() {
    let mut t = PromptTemplates::nih_chestxray14();
    t.positive_templates = vec!["chest x-ray with {findings}".into()];
    for f in &mut t.findings {
        f.synonyms.clear();
    }
    let text = t.all_texts(&LabelSet::new([13, 0, 4]), 10).unwrap();
    assert_eq!(
        text,
        ["chest x-ray with atelectasis, effusion and pneumothorax"]
    );
    t.positive_templates = vec!["no placeholder".into()];
    assert!(t.validate().is_err());
}

#[test]
fn templates_load_from_toml() {
    let t = PromptTemplates::nih_chestxray14();
    let text = toml::to_string(&t).unwrap();
    let back: PromptTemplates = toml::from_str(&text).unwrap();
    assert_eq!(back, t);
}

#[test]
fn real_labels_mixed_with_reports() {
    let sets = label_sets();
    assert_eq!(sets.len(), 536);
    let mut ids = CombinedLabelIds::new();
    for s in &sets {
        ids.id(s);
    }
    // multi-label combinations are far fewer than images
    assert!(
        ids.len() > 14 && ids.len() < 300,
        "{} combinations",
        ids.len()
    );

    let sampler = PromptSampler::new(PromptTemplates::nih_chestxray14(), 0).unwrap();
    let reports = ["Heart size normal. Lungs clear.", "Right pleural effusion."];
    let mut items: Vec<BatchItem> = sets[..32].iter().map(BatchItem::Labels).collect();
    items.insert(3, BatchItem::Report(reports[0]));
    items.push(BatchItem::Report(reports[1]));
    let batch = sampler.assemble(&items, 11).unwrap();
    assert_eq!(batch.texts.len(), 34);
    assert_eq!(batch.texts[3], reports[0]);
    let t = &batch.targets;
    for (i, a) in items.iter().enumerate() {
        for (j, b) in items.iter().enumerate() {
            let same = match (a, b) {
                (BatchItem::Labels(x), BatchItem::Labels(y)) => x == y,
                _ => i == j,
            };
            assert_eq!(t.groups()[i] == t.groups()[j], same, "samples {i}, {j}");
        }
    }
    assert!(
        !t.all_unique(),
        "the first 32 images should share some label sets"
    );
    assert_eq!(batch, sampler.assemble(&items, 11).unwrap());
}

#[test]
fn finding_statements_label_each_text_by_what_it_says() {
    use unicl_loss::{BatchTargets, TextLabel, TextUnit};
    let mut t = PromptTemplates::nih_chestxray14();
    t.unit = TextUnit::Finding;
    let s = PromptSampler::new(t.clone(), 3).unwrap();
    let set = LabelSet::new([1, 4]); // cardiomegaly, effusion
    let (mut present, mut absent) = (0usize, 0usize);
    let mut named = std::collections::HashSet::new();
    for i in 0..600 {
        let (text, label) = s.labelled_text(&set, i / 30, i % 30).unwrap();
        assert_eq!(s.text(&set, i / 30, i % 30).unwrap(), text);
        let TextLabel::Statement {
            finding,
            present: p,
        } = label
        else {
            panic!("{text}: a non-empty set gives statements");
        };
        assert_eq!(
            set.contains(finding),
            p,
            "{text}: states what the set does not hold"
        );
        assert!(
            t.statement_texts(finding).unwrap().contains(&text),
            "{text}"
        );
        assert_eq!(text.starts_with("no "), !p, "{text}");
        if p {
            present += 1;
        } else {
            absent += 1;
        }
        named.insert(finding);
    }
    // present_probability 0.5, and every finding gets stated
    assert!(
        (250..350).contains(&present),
        "{present} present, {absent} absent"
    );
    assert_eq!(named.len(), 14);

    // the empty set: a normal text (labelled by the set) or an absent statement
    let mut kinds = [0usize; 2];
    for i in 0..200 {
        match s.labelled_text(&LabelSet::default(), 0, i).unwrap() {
            (text, TextLabel::Set(e)) => {
                assert!(e.is_empty() && t.negative_texts.contains(&text), "{text}");
                kinds[0] += 1;
            }
            (text, TextLabel::Statement { present, .. }) => {
                assert!(!present && text.starts_with("no "), "{text}");
                kinds[1] += 1;
            }
        }
    }
    assert!(kinds.iter().all(|&k| k > 60), "{kinds:?}");

    // equal statements group; a statement differs from its negation and from the set
    let (eff, no_eff) = (
        TextLabel::Statement {
            finding: 4,
            present: true,
        },
        TextLabel::Statement {
            finding: 4,
            present: false,
        },
    );
    let mut b = BatchTargets::builder();
    for l in [&eff, &no_eff, &eff, &TextLabel::Set(LabelSet::new([4]))] {
        b.push_text_label(l);
    }
    assert_eq!(b.build().groups(), &[0, 1, 0, 2]);

    // the batch assembler uses those labels
    let items = [
        BatchItem::Labels(&set),
        BatchItem::Labels(&set),
        BatchItem::Report("r"),
    ];
    let batch = s.assemble(&items, 5).unwrap();
    let same = s.labelled_text(&set, 5, 0).unwrap().1 == s.labelled_text(&set, 5, 1).unwrap().1;
    assert_eq!(batch.targets.groups()[0] == batch.targets.groups()[1], same);
    assert_eq!(batch.targets.n_positives(2), Some(1));

    // statements always present, or never
    t.present_probability = 1.0;
    let always = PromptSampler::new(t.clone(), 3).unwrap();
    assert!((0..50).all(|i| !always.text(&set, 0, i).unwrap().starts_with("no ")));
    t.present_probability = 1.5;
    assert!(t.validate().is_err());
    t.present_probability = 0.5;
    t.mention_absent = 1;
    assert!(
        t.validate().is_err(),
        "absent mentions are for label-set texts"
    );
    t.mention_absent = 0;
    t.absent_template = "without".into();
    assert!(t.validate().is_err());
}

#[test]
fn absent_findings_take_every_negation_phrasing() {
    use unicl_loss::{TextLabel, TextUnit};
    let mut t = PromptTemplates::nih_chestxray14();
    t.unit = TextUnit::Finding;
    let one = PromptSampler::new(t.clone(), 7).unwrap();
    t.extra_absent_templates = vec![
        "chest x-ray without {finding}".into(),
        "no evidence of {finding}".into(),
    ];
    let s = PromptSampler::new(t.clone(), 7).unwrap();
    let set = LabelSet::new([4]); // effusion
    let mut phrasings = std::collections::BTreeSet::new();
    for i in 0..300 {
        let (text, label) = s.labelled_text(&set, 0, i).unwrap();
        let TextLabel::Statement { finding, present } = label else {
            panic!("{text}");
        };
        assert!(
            t.statement_texts(finding).unwrap().contains(&text),
            "{text}"
        );
        if !present {
            let p = ["no evidence of ", "chest x-ray without ", "no "]
                .into_iter()
                .find(|p| text.starts_with(p))
                .unwrap_or_else(|| panic!("{text}: no negation phrasing"));
            phrasings.insert(p);
            assert!(!text.contains(" a "), "{text}: article kept");
        }
        // the statement drawn (finding, present) does not depend on the phrasings offered
        assert_eq!(one.labelled_text(&set, 0, i).unwrap().1, label);
    }
    assert_eq!(phrasings.len(), 3, "{phrasings:?}");

    // every phrasing of every synonym is in the tokenizer corpus
    let mass = t.statement_texts(9).unwrap();
    for want in [
        "no lung mass",
        "chest x-ray without lung mass",
        "no evidence of mass",
    ] {
        assert!(mass.contains(&want.to_string()), "{want} not in {mass:?}");
    }

    // label-set texts name absent findings with them too
    t.unit = TextUnit::LabelSet;
    t.mention_absent = 2;
    let s = PromptSampler::new(t.clone(), 7).unwrap();
    let texts: String = (0..200).map(|i| s.text(&set, 1, i).unwrap()).collect();
    assert!(texts.contains(", no evidence of ") && texts.contains(", chest x-ray without "));

    // each must name the finding
    t.extra_absent_templates.push("without".into());
    assert!(t.validate().is_err());

    // saved templates without extra phrasings read and write as before they existed
    let plain = PromptTemplates::nih_chestxray14();
    let json = serde_json::to_value(&plain).unwrap();
    assert!(json.get("extra_absent_templates").is_none());
    let back: PromptTemplates = serde_json::from_value(json).unwrap();
    assert_eq!(back, plain);
}

#[test]
fn a_batch_finding_step_contrasts_one_findings_two_statements() {
    use unicl_loss::{TextLabel, TextUnit};
    let mut t = PromptTemplates::nih_chestxray14();
    t.unit = TextUnit::BatchFinding;
    let s = PromptSampler::new(t.clone(), 11).unwrap();
    let sets = label_sets();
    let mut steps_per_finding = [0usize; 14];
    for step in 0..300 {
        let j = s.step_finding(step).unwrap();
        steps_per_finding[j as usize] += 1;
        let items: Vec<BatchItem> = sets.iter().take(40).map(BatchItem::Labels).collect();
        let batch = s.assemble(&items, step).unwrap();
        for (k, set) in sets.iter().take(40).enumerate() {
            let (text, label) = s.labelled_text(set, step, k as u64).unwrap();
            assert_eq!(batch.texts[k], text);
            assert_eq!(
                label,
                TextLabel::Statement {
                    finding: j,
                    present: set.contains(j)
                },
                "{text}"
            );
            assert_eq!(text.starts_with("no "), !set.contains(j), "{text}");
            assert!(t.statement_texts(j).unwrap().contains(&text), "{text}");
        }
        // at most two groups: the images with the finding and those without
        let groups: std::collections::BTreeSet<_> = batch.targets.groups().iter().collect();
        assert!(groups.len() <= 2);
    }
    // every finding gets steps, none most of them
    assert!(
        steps_per_finding.iter().all(|&n| (5..60).contains(&n)),
        "{steps_per_finding:?}"
    );
    // the step's finding depends on the seed
    let other = PromptSampler::new(t.clone(), 12).unwrap();
    assert!((0..50).any(|step| other.step_finding(step).unwrap() != s.step_finding(step).unwrap()));
    // without a step there is no batch finding to state
    let mut rng = rand::rng();
    assert!(t.sample_labelled(&sets[0], &mut rng).is_err());
}

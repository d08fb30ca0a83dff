//! Hand-written report sentences with the labels a radiologist reader would give them.
//! Every case lists the observations it pins down (`1`, `0`, `-1`, or `B` for blank);
//! observations not listed are not checked, except No Finding, which every case states.

use report_labeler::{Label, Labeler, Observation as O, ReportLabels};

const P: Option<Label> = Some(Label::Positive);
const N: Option<Label> = Some(Label::Negative);
const U: Option<Label> = Some(Label::Uncertain);
const B: Option<Label> = None;

struct Case {
    text: &'static str,
    expect: &'static [(O, Option<Label>)],
}

const fn case(text: &'static str, expect: &'static [(O, Option<Label>)]) -> Case {
    Case { text, expect }
}

const CASES: &[Case] = &[
    // negation
    case(
        "No pneumothorax.",
        &[(O::Pneumothorax, N), (O::NoFinding, P)],
    ),
    case(
        "No evidence of pleural effusion or pneumothorax.",
        &[
            (O::PleuralEffusion, N),
            (O::Pneumothorax, N),
            (O::NoFinding, P),
        ],
    ),
    case(
        "There is no focal consolidation, pleural effusion, or pneumothorax.",
        &[
            (O::Consolidation, N),
            (O::PleuralEffusion, N),
            (O::Pneumothorax, N),
            (O::NoFinding, P),
        ],
    ),
    case(
        "Negative for pneumonia.",
        &[(O::Pneumonia, N), (O::NoFinding, P)],
    ),
    case(
        "Lungs are free of consolidation.",
        &[(O::Consolidation, N), (O::NoFinding, P)],
    ),
    case(
        "Neither pneumothorax nor effusion.",
        &[
            (O::Pneumothorax, N),
            (O::PleuralEffusion, N),
            (O::NoFinding, P),
        ],
    ),
    case(
        "No new consolidation.",
        &[(O::Consolidation, N), (O::NoFinding, P)],
    ),
    case(
        "Pneumothorax is absent.",
        &[(O::Pneumothorax, N), (O::NoFinding, P)],
    ),
    case(
        "Pleural effusions are not seen.",
        &[(O::PleuralEffusion, N), (O::NoFinding, P)],
    ),
    case(
        "Small left pleural effusion has resolved.",
        &[(O::PleuralEffusion, N), (O::NoFinding, P)],
    ),
    case(
        "Resolved right pneumothorax.",
        &[(O::Pneumothorax, N), (O::NoFinding, P)],
    ),
    case(
        "The previously seen right upper lobe consolidation has resolved.",
        &[(O::Consolidation, N), (O::NoFinding, P)],
    ),
    case(
        "Pneumothorax is no longer visualized.",
        &[(O::Pneumothorax, N), (O::NoFinding, P)],
    ),
    case(
        "Atelectasis rather than pneumonia.",
        &[(O::Atelectasis, P), (O::Pneumonia, N), (O::NoFinding, B)],
    ),
    case(
        "No acute osseous abnormality.",
        &[(O::Fracture, N), (O::NoFinding, P)],
    ),
    // uncertainty
    case(
        "Cannot exclude pneumonia.",
        &[(O::Pneumonia, U), (O::NoFinding, B)],
    ),
    case(
        "Pneumonia cannot be excluded.",
        &[(O::Pneumonia, U), (O::NoFinding, B)],
    ),
    case(
        "A small pleural effusion cannot be ruled out.",
        &[(O::PleuralEffusion, U), (O::NoFinding, B)],
    ),
    case(
        "Pleural effusion is not excluded.",
        &[(O::PleuralEffusion, U), (O::NoFinding, B)],
    ),
    case(
        "Atelectasis versus consolidation in the left lower lobe.",
        &[
            (O::Atelectasis, U),
            (O::Consolidation, U),
            (O::NoFinding, B),
        ],
    ),
    case(
        "Right lower lobe opacity, atelectasis vs. pneumonia.",
        &[
            (O::LungOpacity, P),
            (O::Atelectasis, U),
            (O::Pneumonia, U),
            (O::NoFinding, B),
        ],
    ),
    case(
        "Findings are suggestive of mild interstitial edema.",
        &[(O::Edema, U), (O::NoFinding, B)],
    ),
    case(
        "Right basilar opacity concerning for pneumonia.",
        &[(O::LungOpacity, P), (O::Pneumonia, U), (O::NoFinding, B)],
    ),
    case(
        "Opacity at the left base may represent atelectasis or pneumonia.",
        &[
            (O::LungOpacity, P),
            (O::Atelectasis, U),
            (O::Pneumonia, U),
            (O::NoFinding, B),
        ],
    ),
    case(
        "Likely bibasilar atelectasis.",
        &[(O::Atelectasis, U), (O::NoFinding, B)],
    ),
    case(
        "Possible small right apical pneumothorax.",
        &[(O::Pneumothorax, U), (O::NoFinding, B)],
    ),
    case(
        "The heart may be mildly enlarged.",
        &[(O::Cardiomegaly, U), (O::NoFinding, B)],
    ),
    case(
        "Borderline heart size.",
        &[(O::Cardiomegaly, U), (O::NoFinding, B)],
    ),
    case(
        "The heart size is top normal.",
        &[(O::Cardiomegaly, U), (O::NoFinding, B)],
    ),
    case(
        "Heart size is at the upper limits of normal.",
        &[(O::Cardiomegaly, U), (O::NoFinding, B)],
    ),
    // scope
    case(
        "No effusion but there is a right lower lobe opacity.",
        &[
            (O::PleuralEffusion, N),
            (O::LungOpacity, P),
            (O::NoFinding, B),
        ],
    ),
    case(
        "No pneumothorax, however there is a small left effusion.",
        &[
            (O::Pneumothorax, N),
            (O::PleuralEffusion, P),
            (O::NoFinding, B),
        ],
    ),
    case(
        "No focal consolidation although mild atelectasis is present at the bases.",
        &[
            (O::Consolidation, N),
            (O::Atelectasis, P),
            (O::NoFinding, B),
        ],
    ),
    case(
        "No pleural effusion; moderate cardiomegaly.",
        &[
            (O::PleuralEffusion, N),
            (O::Cardiomegaly, P),
            (O::NoFinding, B),
        ],
    ),
    case(
        "No pleural effusion or pneumothorax is seen, and the heart is enlarged.",
        &[
            (O::PleuralEffusion, N),
            (O::Pneumothorax, N),
            (O::Cardiomegaly, P),
            (O::NoFinding, B),
        ],
    ),
    case(
        "There may be a small left effusion, no pneumothorax.",
        &[
            (O::PleuralEffusion, U),
            (O::Pneumothorax, N),
            (O::NoFinding, B),
        ],
    ),
    case(
        "There is no pleural effusion and there is a small pneumothorax.",
        &[
            (O::PleuralEffusion, N),
            (O::Pneumothorax, P),
            (O::NoFinding, B),
        ],
    ),
    case(
        "No effusion and the ET tube is in good position.",
        &[
            (O::PleuralEffusion, N),
            (O::SupportDevices, P),
            (O::NoFinding, P),
        ],
    ),
    case(
        "No opacity in the right lung or effusion.",
        &[
            (O::LungOpacity, N),
            (O::PleuralEffusion, N),
            (O::NoFinding, P),
        ],
    ),
    case(
        "Mild pulmonary vascular congestion without frank edema.",
        &[(O::Edema, P), (O::NoFinding, B)],
    ),
    // not negations
    case(
        "No change in moderate right pleural effusion.",
        &[(O::PleuralEffusion, P), (O::NoFinding, B)],
    ),
    case(
        "No interval change in cardiomegaly.",
        &[(O::Cardiomegaly, P), (O::NoFinding, B)],
    ),
    case(
        "Right pneumothorax has decreased in size.",
        &[(O::Pneumothorax, P), (O::NoFinding, B)],
    ),
    case(
        "Partially resolved left lower lobe pneumonia.",
        &[(O::Pneumonia, P), (O::NoFinding, B)],
    ),
    // the heart
    case(
        "Heart size is normal.",
        &[(O::Cardiomegaly, N), (O::NoFinding, P)],
    ),
    case(
        "Stable cardiomegaly.",
        &[(O::Cardiomegaly, P), (O::NoFinding, B)],
    ),
    case(
        "The heart is mildly enlarged.",
        &[(O::Cardiomegaly, P), (O::NoFinding, B)],
    ),
    case(
        "The heart is not enlarged.",
        &[(O::Cardiomegaly, N), (O::NoFinding, P)],
    ),
    case(
        "The cardiomediastinal silhouette is within normal limits.",
        &[
            (O::Cardiomegaly, N),
            (O::EnlargedCardiomediastinum, N),
            (O::NoFinding, P),
        ],
    ),
    case(
        "Widened mediastinum.",
        &[
            (O::EnlargedCardiomediastinum, P),
            (O::Cardiomegaly, B),
            (O::NoFinding, B),
        ],
    ),
    // support devices
    case(
        "Right PICC with tip in the SVC.",
        &[(O::SupportDevices, P), (O::NoFinding, P)],
    ),
    case(
        "Tip in the lower SVC.",
        &[(O::SupportDevices, P), (O::NoFinding, P)],
    ),
    case(
        "ET tube terminates 4 cm above the carina.",
        &[(O::SupportDevices, P), (O::NoFinding, P)],
    ),
    case(
        "Left chest wall pacemaker with leads in the right atrium and right ventricle.",
        &[(O::SupportDevices, P), (O::NoFinding, P)],
    ),
    case(
        "The endotracheal tube has been removed.",
        &[(O::SupportDevices, N), (O::NoFinding, P)],
    ),
    case(
        "Interval removal of the right chest tube. No pneumothorax.",
        &[
            (O::SupportDevices, N),
            (O::Pneumothorax, N),
            (O::NoFinding, P),
        ],
    ),
    // other observations, plurals and look-alikes
    case(
        "Healed left rib fractures.",
        &[(O::Fracture, P), (O::NoFinding, B)],
    ),
    case(
        "Multiple bilateral pulmonary nodules.",
        &[(O::LungLesion, P), (O::NoFinding, B)],
    ),
    case(
        "Calcified pleural plaques.",
        &[(O::PleuralOther, P), (O::NoFinding, B)],
    ),
    case(
        "Bilateral pneumothoraces.",
        &[(O::Pneumothorax, P), (O::NoFinding, B)],
    ),
    case(
        "Small right hydropneumothorax.",
        &[
            (O::Pneumothorax, P),
            (O::PleuralEffusion, P),
            (O::NoFinding, B),
        ],
    ),
    case(
        "Massive right pleural effusion.",
        &[
            (O::PleuralEffusion, P),
            (O::LungLesion, B),
            (O::NoFinding, B),
        ],
    ),
    case(
        "Small pericardial effusion.",
        &[(O::PleuralEffusion, B), (O::NoFinding, P)],
    ),
    case(
        "Pneumomediastinum is present.",
        &[
            (O::Pneumothorax, B),
            (O::EnlargedCardiomediastinum, B),
            (O::NoFinding, P),
        ],
    ),
    case(
        "Lytic lesion in the proximal humerus.",
        &[(O::LungLesion, B), (O::NoFinding, P)],
    ),
    case(
        "Costophrenic angles are sharp.",
        &[(O::PleuralEffusion, N), (O::NoFinding, P)],
    ),
    case(
        "Blunting of the left costophrenic angle.",
        &[(O::PleuralEffusion, U), (O::NoFinding, B)],
    ),
    case(
        "Lungs are clear.",
        &[(O::LungOpacity, N), (O::NoFinding, P)],
    ),
    case(
        "The lungs are well expanded and clear.",
        &[(O::LungOpacity, N), (O::NoFinding, P)],
    ),
    // more phrasing seen in practice
    case(
        "No pneumothorax is seen, cardiomegaly is stable.",
        &[
            (O::Pneumothorax, N),
            (O::Cardiomegaly, P),
            (O::NoFinding, B),
        ],
    ),
    case(
        "The lungs are clear bilaterally without evidence of focal consolidation, pleural \
         effusion, or pneumothorax.",
        &[
            (O::LungOpacity, N),
            (O::Consolidation, N),
            (O::PleuralEffusion, N),
            (O::Pneumothorax, N),
            (O::NoFinding, P),
        ],
    ),
    case(
        "There is no evidence of pneumonia, and the endotracheal tube is in standard position.",
        &[(O::Pneumonia, N), (O::SupportDevices, P), (O::NoFinding, P)],
    ),
    case(
        "No significant interval change in the small left pleural effusion.",
        &[(O::PleuralEffusion, P), (O::NoFinding, B)],
    ),
    case(
        "Left basilar opacity is likely atelectasis.",
        &[(O::LungOpacity, P), (O::Atelectasis, U), (O::NoFinding, B)],
    ),
    case(
        "Pneumonia is unlikely.",
        &[(O::Pneumonia, N), (O::NoFinding, P)],
    ),
    case(
        "Right apical pneumothorax is unchanged in size, measuring 1 cm.",
        &[(O::Pneumothorax, P), (O::NoFinding, B)],
    ),
    case(
        "No evidence of acute fracture.",
        &[(O::Fracture, N), (O::NoFinding, P)],
    ),
    case(
        "Swan-Ganz catheter tip in the right pulmonary artery.",
        &[(O::SupportDevices, P), (O::NoFinding, P)],
    ),
    case(
        "The trachea is midline. Single portable view of the chest.",
        &[(O::SupportDevices, B), (O::NoFinding, P)],
    ),
    case(
        "Heart size cannot be assessed. Left lower lobe consolidation.",
        &[
            (O::Cardiomegaly, B),
            (O::Consolidation, P),
            (O::NoFinding, B),
        ],
    ),
    case(
        "Moderate cardiomegaly. The mediastinal contours are normal.",
        &[
            (O::Cardiomegaly, P),
            (O::EnlargedCardiomediastinum, N),
            (O::NoFinding, B),
        ],
    ),
    case(
        "No definite pneumothorax.",
        &[(O::Pneumothorax, N), (O::NoFinding, P)],
    ),
    case(
        "Increased interstitial markings may reflect mild edema or atypical infection.",
        &[
            (O::LungOpacity, P),
            (O::Edema, U),
            (O::Pneumonia, U),
            (O::NoFinding, B),
        ],
    ),
    case(
        "Nasogastric tube tip is not visualized.",
        &[(O::SupportDevices, P), (O::NoFinding, P)],
    ),
    // multi-sentence reports and aggregation
    case(
        "Frontal and lateral views of the chest. The heart size is normal. The lungs are \
         clear. No pleural effusion or pneumothorax. No acute osseous abnormality.",
        &[
            (O::Cardiomegaly, N),
            (O::LungOpacity, N),
            (O::PleuralEffusion, N),
            (O::Pneumothorax, N),
            (O::Fracture, N),
            (O::NoFinding, P),
        ],
    ),
    case(
        "Endotracheal tube and nasogastric tube in standard position. Moderate cardiomegaly \
         with mild pulmonary edema. Small bilateral pleural effusions with adjacent \
         atelectasis. No pneumothorax.",
        &[
            (O::SupportDevices, P),
            (O::Cardiomegaly, P),
            (O::Edema, P),
            (O::PleuralEffusion, P),
            (O::Atelectasis, P),
            (O::Pneumothorax, N),
            (O::NoFinding, B),
        ],
    ),
    case(
        "Small right pleural effusion. No left pleural effusion.",
        &[(O::PleuralEffusion, P), (O::NoFinding, B)],
    ),
    case(
        "Possible pneumonia. Right lower lobe pneumonia.",
        &[(O::Pneumonia, P), (O::NoFinding, B)],
    ),
    case(
        "No pneumothorax. Possible small pneumothorax at the left apex.",
        &[(O::Pneumothorax, U), (O::NoFinding, B)],
    ),
    case(
        "Right IJ central line tip at the cavoatrial junction. No acute cardiopulmonary \
         process.",
        &[(O::SupportDevices, P), (O::NoFinding, P)],
    ),
    case(
        "INDICATION: Evaluate for pneumonia.\nFINDINGS: Clear lungs. No effusion.",
        &[
            (O::Pneumonia, B),
            (O::LungOpacity, N),
            (O::PleuralEffusion, N),
            (O::NoFinding, P),
        ],
    ),
    case("", &[(O::NoFinding, P), (O::Cardiomegaly, B)]),
];

fn show(l: &ReportLabels) -> String {
    O::ALL
        .iter()
        .filter_map(|&o| l.get(o).map(|v| format!("{o}={}", v.value())))
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn hand_written_sentences() {
    assert!(CASES.len() >= 40);
    let labeler = Labeler::new();
    let mut failures = Vec::new();
    for c in CASES {
        let got = labeler.label_detailed(c.text);
        for &(o, want) in c.expect {
            if got.labels.get(o) != want {
                failures.push(format!(
                    "{:?}: {o}: want {:?}, got {:?}\n    labels: {}\n    mentions: {:?}",
                    c.text,
                    want.map(Label::value),
                    got.labels.get(o).map(Label::value),
                    show(&got.labels),
                    got.mentions
                        .iter()
                        .map(|m| (m.text.as_str(), m.observation.name(), m.label))
                        .collect::<Vec<_>>()
                ));
            }
        }
        assert!(
            c.expect.iter().any(|&(o, _)| o == O::NoFinding),
            "{:?} does not state No Finding",
            c.text
        );
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn no_finding_ignores_support_devices_and_negatives_only() {
    let l = Labeler::new().label("Pacemaker in place. No effusion. Heart size normal.");
    assert_eq!(l.get(O::NoFinding), P);
    let l = Labeler::new().label("Pacemaker in place. Possible small effusion.");
    assert_eq!(l.get(O::NoFinding), B);
}

#[test]
fn section_skipping_can_be_turned_off() {
    let text = "INDICATION: Evaluate for pneumonia. FINDINGS: Clear lungs.";
    let all = Labeler::with_config(report_labeler::LabelerConfig {
        skip_sections: false,
    });
    assert_eq!(all.label(text).get(O::Pneumonia), U);
    assert_eq!(Labeler::new().label(text).get(O::Pneumonia), B);
}

#[test]
fn mentions_explain_labels() {
    let r = Labeler::new().label_detailed("No pneumothorax. Stable cardiomegaly.");
    let m: Vec<_> = r
        .mentions
        .iter()
        .map(|m| (m.sentence, m.observation, m.text.as_str(), m.label))
        .collect();
    assert_eq!(
        m,
        [
            (0, O::Pneumothorax, "pneumothorax", N),
            (1, O::Cardiomegaly, "cardiomegaly", P)
        ]
    );
}

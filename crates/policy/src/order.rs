//! How specific a policy is, so that the policies applying to a proxy can be
//! laid over each other from least to most specific, and which policies
//! take no effect at all (shadow).

use std::cmp::Ordering;

use kodiak_api::Resource;

use crate::target::Target;

/// Policies carrying this label with the value `shadow` do not take effect.
pub const EFFECT_LABEL: &str = "kuma.io/effect";
/// Where a policy was created in a multizone deployment (`global` or `zone`).
const ORIGIN_LABEL: &str = "kuma.io/origin";
/// The name a policy was given by its author, when it is stored under another.
const DISPLAY_NAME_LABEL: &str = "kuma.io/display-name";

/// What, besides its top-level targetRef, ranks a policy among others, read
/// from its name and labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rank {
    /// The stored name: the last tie-breaker.
    name: String,
    /// Labelled `kuma.io/effect: shadow`.
    shadow: bool,
    /// Multizone origin rank: policies created on a zone override global ones.
    origin: u8,
    /// The name that breaks ties between equally specific policies.
    display_name: String,
}

impl Rank {
    pub(crate) fn from_resource(resource: &Resource) -> Rank {
        let label = |name: &str| resource.labels.get(name).map(String::as_str);
        Rank {
            name: resource.key.name.clone(),
            shadow: label(EFFECT_LABEL) == Some("shadow"),
            origin: match label(ORIGIN_LABEL).unwrap_or_default() {
                "global" => 1,
                "" => 2,
                "zone" => 3,
                _ => 0,
            },
            display_name: label(DISPLAY_NAME_LABEL)
                .filter(|name| !name.is_empty())
                .unwrap_or(&resource.key.name)
                .into(),
        }
    }

    /// Whether the policy is labelled `kuma.io/effect: shadow`.
    pub(crate) fn is_shadow(&self) -> bool {
        self.shadow
    }
}

/// Orders two policies, given by their top-level target and rank, from least
/// to most specific: by the kind of the top-level targetRef; for Dataplane
/// targets, a name over labels over all Dataplanes, then a sectionName over
/// none; zone-made over global policies; and last by name, the smaller name
/// being the more specific.
pub(crate) fn specificity(a: (&Target, &Rank), b: (&Target, &Rank)) -> Ordering {
    let (a_rank, b_rank) = (a.1, b.1);
    class(a, b).then_with(|| b_rank.display_name.cmp(&a_rank.display_name)).then_with(|| b_rank.name.cmp(&a_rank.name))
}

/// [`specificity`] without the names: policies it finds equal differ only
/// by name.
pub(crate) fn class(a: (&Target, &Rank), b: (&Target, &Rank)) -> Ordering {
    let ((a_target, a), (b_target, b)) = (a, b);
    a_target
        .kind()
        .cmp(&b_target.kind())
        .then(a_target.dataplane_detail().cmp(&b_target.dataplane_detail()))
        .then(a.origin.cmp(&b.origin))
}

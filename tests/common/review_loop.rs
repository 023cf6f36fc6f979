//! The review loop taken out of a project's rules, for tests and benches
//! of the full profile that run no vision server (the loop's own tests run
//! with the fake one). Shared by tests/common and benches/common.

/// The `character_refs` rule without the review loop: character art
/// straight from ComfyUI.
const REFS_WITHOUT_REVIEW: &str = "character_refs:
  profiles:
    animatic:
      engine: character_card
    full:
      engine: comfyui_txt2img
      fallbacks: [character_card]
      workflows:
        comfyui_txt2img:
          file: rules/workflows/txt2img.json
          bind:
            prompt: 6.text
            negative: 7.text
            seed: 3.seed
            steps: 3.steps
            cfg: 3.cfg
            sampler: 3.sampler_name
            checkpoint: 4.ckpt_name
            width: 5.width
            height: 5.height
            batch: 5.batch_size

";

/// `rules/images.yaml`'s text with the loop's rules (`candidate:` up to
/// `shot_image:`) replaced by a plain `character_refs` rule.
pub fn without_review_loop(images_yaml: &str) -> String {
    let start = images_yaml.find("candidate:\n").expect("the loop's rules");
    let end = images_yaml.find("shot_image:\n").expect("the shot image rule");
    format!("{}{REFS_WITHOUT_REVIEW}{}", &images_yaml[..start], &images_yaml[end..])
}

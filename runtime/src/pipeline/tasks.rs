//! Post-processing by task: what a frame's outputs mean. `classify` (top-k with labels),
//! `detect` (SSD, YOLO or finished boxes, then NMS: [`super::detect`]) and `raw` (summary statistics of the
//! first output). The task comes from the model's sidecar ([`super::sidecar`]). Results live
//! in fixed-capacity [`heapless`] structures: no allocation per frame.

use serde::Serialize;
use tract_nnef::internal::*;

use super::detect::{Detection, Detector, MAX_DETECTIONS};
use super::preprocess::image_input;
use crate::model::Model;

/// Most classes a classification result reports.
pub const MAX_TOP_K: usize = 8;

/// What to make of a model's outputs.
#[derive(Debug, Clone)]
pub enum Task {
    /// Top-k classes of the first output (scores as the model gives them).
    Classify {
        /// Class names, by index; indices past the end are shown as numbers.
        labels: Vec<String>,
        /// How many classes to report (at most [`MAX_TOP_K`]).
        top_k: usize,
    },
    /// Objects with boxes.
    Detect {
        /// Decoder and NMS.
        detector: Box<Detector>,
        /// Class names, by index.
        labels: Vec<String>,
    },
    /// Min, max and mean of the first output.
    Raw,
}

impl Task {
    /// A classification task.
    pub fn classify(labels: Vec<String>, top_k: usize) -> Task {
        Task::Classify {
            labels,
            top_k: top_k.clamp(1, MAX_TOP_K),
        }
    }
}

/// One class of a classification result.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct ClassScore {
    /// Class index in the model's output.
    pub index: u32,
    /// The model's score for it.
    pub score: f32,
}

/// The result of one frame.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum TaskResult {
    /// Nothing yet.
    #[default]
    None,
    /// Best classes first.
    Classes(heapless::Vec<ClassScore, MAX_TOP_K>),
    /// Detected objects, best first (boxed: the list is large; allocated on the first frame,
    /// then reused).
    Detections(Box<heapless::Vec<Detection, MAX_DETECTIONS>>),
    /// Statistics of a raw output.
    Raw {
        /// Smallest element.
        min: f32,
        /// Largest element.
        max: f32,
        /// Mean of the elements.
        mean: f32,
    },
}

impl Task {
    /// Checks the task against the model and prepares it: a detector's head is bound to the
    /// model's output shapes, and its class count checked against the labels. The message
    /// names the sidecar key at fault and the shapes that disagree.
    pub fn bind(&mut self, model: &Model) -> Result<(), String> {
        if model.outputs().is_empty() {
            return Err("the model has no output".into());
        }
        if let Task::Detect { detector, labels } = self {
            let input = model.inputs().first().ok_or("the model has no input")?;
            let (_, _, h, w) = image_input(input).map_err(|e| e.to_string())?;
            detector.bind(model.outputs(), (h, w), labels.len())?;
            let classes = detector.classes().unwrap_or(0);
            if !labels.is_empty() && labels.len() != classes {
                return Err(format!(
                    "labels: {} names, but the model scores {classes} classes (outputs: {})",
                    labels.len(),
                    model
                        .outputs()
                        .iter()
                        .map(|o| format!("`{}` {:?}", o.name, o.shape))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Computes the result of `outputs` into `result` (reusing its storage).
    pub fn apply(&mut self, outputs: &[TValue], result: &mut TaskResult) -> TractResult<()> {
        if let Task::Detect { detector, .. } = self {
            if !matches!(result, TaskResult::Detections(_)) {
                *result = TaskResult::Detections(Box::default());
            }
            let TaskResult::Detections(out) = result else {
                unreachable!()
            };
            return detector.run(outputs, out);
        }
        let first = outputs.first().context("model produced no output")?;
        let view = first.try_as_plain_ram()?;
        let scores = view.as_slice::<f32>().context("first output must be f32")?;
        match self {
            Task::Detect { .. } => unreachable!(),
            Task::Classify { top_k, .. } => {
                let mut top: heapless::Vec<ClassScore, MAX_TOP_K> = heapless::Vec::new();
                for (i, &score) in scores.iter().enumerate() {
                    if score.is_nan() {
                        continue;
                    }
                    let pos = top
                        .iter()
                        .position(|c| score > c.score)
                        .unwrap_or(top.len());
                    if pos < *top_k {
                        if top.len() == *top_k {
                            top.pop();
                        }
                        let _ = top.insert(
                            pos,
                            ClassScore {
                                index: i as u32,
                                score,
                            },
                        );
                    }
                }
                *result = TaskResult::Classes(top);
            }
            Task::Raw => {
                let (mut min, mut max, mut sum) = (f32::INFINITY, f32::NEG_INFINITY, 0f64);
                for &v in scores {
                    min = min.min(v);
                    max = max.max(v);
                    sum += v as f64;
                }
                let mean = if scores.is_empty() {
                    0.0
                } else {
                    (sum / scores.len() as f64) as f32
                };
                *result = TaskResult::Raw { min, max, mean };
            }
        }
        Ok(())
    }

    /// The label of class `index`, if the task has one.
    pub fn label(&self, index: u32) -> Option<&str> {
        match self {
            Task::Classify { labels, .. } | Task::Detect { labels, .. } => {
                labels.get(index as usize).map(String::as_str)
            }
            Task::Raw => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_in_order_with_ties_keeping_first() {
        let t = Tensor::from_shape(&[1, 6], &[0.1f32, 0.5, 0.2, 0.5, f32::NAN, 0.05]).unwrap();
        let mut task = Task::classify(vec!["a".into(), "b".into()], 3);
        let mut r = TaskResult::None;
        task.apply(&[t.into_tvalue()], &mut r).unwrap();
        let TaskResult::Classes(top) = r else {
            panic!()
        };
        let idx: Vec<u32> = top.iter().map(|c| c.index).collect();
        assert_eq!(idx, vec![1, 3, 2]);
        assert_eq!(task.label(1), Some("b"));
        assert_eq!(task.label(3), None);
    }

    #[test]
    fn raw_statistics() {
        let t = Tensor::from_shape(&[4], &[1f32, -2., 3., 2.]).unwrap();
        let mut r = TaskResult::None;
        Task::Raw.apply(&[t.into_tvalue()], &mut r).unwrap();
        assert_eq!(
            r,
            TaskResult::Raw {
                min: -2.0,
                max: 3.0,
                mean: 1.0
            }
        );
    }
}

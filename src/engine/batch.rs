//! Splitting a forward call into batches the model can run together.

use crate::preprocess::Pixels;

/// Groups image indices so that each group holds images of one shape and at most
/// `max_batch` of them, in first-seen order.
pub fn plan_batches(images: &[&Pixels], max_batch: usize) -> Vec<Vec<usize>> {
    let max_batch = max_batch.max(1);
    let mut groups: Vec<(Vec<usize>, Vec<usize>)> = Vec::new();
    for (i, p) in images.iter().enumerate() {
        match groups.iter_mut().find(|(shape, _)| *shape == p.shape) {
            Some((_, idx)) => idx.push(i),
            None => groups.push((p.shape.clone(), vec![i])),
        }
    }
    groups
        .into_iter()
        .flat_map(|(_, idx)| {
            idx.chunks(max_batch)
                .map(|c| c.to_vec())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn px(shape: &[usize]) -> Pixels {
        Pixels {
            data: vec![],
            shape: shape.to_vec(),
            n_tokens: 1,
        }
    }

    #[test]
    fn groups_by_shape_and_chunks() {
        let a = px(&[3, 4, 4]);
        let b = px(&[3, 8, 4]);
        let imgs = [&a, &b, &a, &a, &b];
        assert_eq!(
            plan_batches(&imgs, 2),
            vec![vec![0, 2], vec![3], vec![1, 4]]
        );
        assert_eq!(plan_batches(&imgs, 0).len(), 5);
    }
}

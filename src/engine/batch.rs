//! Splitting a forward call into batches the model can run together.

use crate::preprocess::Pixels;

/// Groups image indices into batches of at most `max_batch` images. Unless the model takes
/// `mixed_shapes` in one batch, each group holds images of one shape, in first-seen order.
pub fn plan_batches(images: &[&Pixels], max_batch: usize, mixed_shapes: bool) -> Vec<Vec<usize>> {
    let max_batch = max_batch.max(1);
    if mixed_shapes {
        let all: Vec<usize> = (0..images.len()).collect();
        return all.chunks(max_batch).map(|c| c.to_vec()).collect();
    }
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
            grid: [1, 1, 1],
            extra: Vec::new(),
        }
    }

    #[test]
    fn groups_by_shape_and_chunks() {
        let a = px(&[3, 4, 4]);
        let b = px(&[3, 8, 4]);
        let imgs = [&a, &b, &a, &a, &b];
        assert_eq!(
            plan_batches(&imgs, 2, false),
            vec![vec![0, 2], vec![3], vec![1, 4]]
        );
        assert_eq!(plan_batches(&imgs, 0, false).len(), 5);
        assert_eq!(
            plan_batches(&imgs, 3, true),
            vec![vec![0, 1, 2], vec![3, 4]]
        );
    }
}

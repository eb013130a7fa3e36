// The attribution view: probe images x methods at full resolution, each method's column headed by its
// sanity verdict, a step selector, the sanity table and the faithfulness metrics over training.
import {element, getJSON, postForm, query, showError} from './api.js';
import {lineChart} from './charts.js';

function verdict(method, sanity, threshold) {
  const numbers = sanity[method];
  if (!numbers) return element('div', {class: 'verdict unknown', text: 'not checked'});
  const r = numbers.randomisation_correlation.toFixed(2);
  return numbers.rejected
    ? element('div', {class: 'verdict rejected', text: `REJECTED: maps barely change with a randomised model (r = ${r} > ${threshold})`})
    : element('div', {class: 'verdict passed', text: `passes the randomisation check (r = ${r})`});
}

function rejectedNote(index) {
  const rejected = Object.keys(index.sanity).filter((m) => index.sanity[m].rejected);
  if (!rejected.length) return element('span');
  return element('p', {class: 'note', id: 'rejected-note', text: `${rejected.join(', ')}: REJECTED by the randomisation check of `
    + 'Adebayo et al. (2018): their maps stay nearly the same when the model\'s weights are replaced by random ones, so they show '
    + 'the input (here the digit\'s strokes: Integrated Gradients multiplies by the input, Occlusion compares with a black '
    + 'background) more than what this model learned. Read the columns that pass.'});
}

function sanityTable(index) {
  const methods = Object.keys(index.sanity);
  if (!methods.length) return element('p', {text: 'No sanity checks recorded (they run at the end of fit).'});
  const header = element('tr', {}, ['method', 'randomisation correlation', 'infidelity', 'max sensitivity', 'verdict']
    .map((text) => element('th', {text})));
  const rows = methods.map((m) => {
    const s = index.sanity[m];
    return element('tr', {class: s.rejected ? 'rejected' : ''}, [
      element('td', {text: m}), element('td', {text: s.randomisation_correlation.toFixed(3)}),
      element('td', {text: s.infidelity.toPrecision(3)}), element('td', {text: s.sensitivity_max.toPrecision(3)}),
      element('td', {text: s.rejected ? 'rejected' : 'passes'}),
    ]);
  });
  return element('table', {class: 'numbers', id: 'sanity-table'}, [header, ...rows]);
}

// Every method's column re-explained live for one class, with the run's newest checkpoint.
async function explainClass(run, checkpoint, index, step, target, status) {
  const columns = {};
  for (const method of index.methods) {
    const form = new FormData();
    for (const [key, value] of Object.entries({run, checkpoint, question: 'probe', step, method, target})) form.append(key, value);
    let job = await postForm('./explorer/submit', form);
    while (job.status === 'queued' || job.status === 'running') {
      status.textContent = `explaining class ${index.class_names[target] ?? target} with ${method} (checkpoint ${checkpoint})...`;
      job = await getJSON(`./explorer/job?id=${job.id}&wait=1`);
    }
    if (job.status !== 'done') throw new Error(job.error || `job ${job.status}`);
    columns[method] = job.result.images;
  }
  status.textContent = `class ${index.class_names[target] ?? target}, explained live with checkpoint ${checkpoint} (the probe images as recorded at step ${step})`;
  return columns;
}

function grid(run, index, step, panel, live) {
  const methods = index.methods;
  const head = element('tr', {}, [element('th', {text: 'image'}), ...methods.map((m) => element('th', {}, [
    element('div', {text: m}), verdict(m, index.sanity, index.randomisation_threshold)]))]);
  const explained = (image) => (live ? live[methods[0]][image.position] : {target_name: image.explained, probability: image.probability});
  const rows = index.images.map((image) => element('tr', {}, [
    element('td', {class: 'caption', text: `#${image.index}\ntrue ${image.label ?? '-'}\nexplained ${explained(image).target_name} `
      + `p=${explained(image).probability.toFixed(2)}${live ? ' (live)' : ''}`}),
    ...methods.map((m) => element('td', {}, [element('img', {
      class: 'attribution', alt: `${m} #${image.index}`,
      src: live ? live[m][image.position].png : `./attributions/image?${query({run, step, method: m, image: image.position, panel})}`,
    })])),
  ]));
  return element('table', {class: 'grid', id: 'attribution-grid'}, [head, ...rows]);
}

async function drawFaithfulness(container, run) {
  const data = await getJSON(`./faithfulness?${query({run})}`);
  for (const [metric, methods] of Object.entries(data.metrics)) {
    const chart = element('div', {class: 'chart'});
    container.append(chart);
    const series = Object.entries(methods).map(([name, s]) => ({name, x: s.x, y: s.y}));
    await lineChart(chart, series, {title: `${metric} over training (${data.better[metric]} is better)`, ytitle: metric, height: 300});
  }
}

export async function renderAttributions(container, run, checkpoints) {
  container.replaceChildren();
  try {
    const index = await getJSON(`./attributions?${query({run})}`);
    const steps = element('select', {id: 'attribution-step'}, index.steps.map((s) => element('option', {value: String(s), text: `step ${s}`})));
    steps.value = String(index.steps[index.steps.length - 1]);
    const panel = element('select', {id: 'attribution-panel'}, ['overlay', 'attribution', 'input'].map((p) => element('option', {value: p, text: p})));
    const holder = element('div');
    const status = element('div', {class: 'status', id: 'attribution-status'});
    const target = element('select', {id: 'attribution-target'}, [element('option', {value: '', text: 'as recorded (the predicted class)'}),
      ...index.class_names.map((name, i) => element('option', {value: String(i), text: `class ${name} (live)`}))]);
    if (!checkpoints.length) target.disabled = true;
    const draw = async () => {
      status.textContent = '';
      if (target.value === '') {
        holder.replaceChildren(grid(run, index, steps.value, panel.value, null));
        return;
      }
      try {
        const live = await explainClass(run, checkpoints[0], index, steps.value, target.value, status);
        holder.replaceChildren(grid(run, index, steps.value, 'overlay', live));
      } catch (error) {
        status.textContent = '';
        showError(status, error);
      }
    };
    for (const node of [steps, panel, target]) node.addEventListener('change', draw);
    container.append(
      element('h2', {text: `Attributions: ${run}`}),
      element('p', {text: 'Each map explains the class shown under "explained" (green: raises its score, red: lowers it), '
        + 'on the 98th-percentile scale of the method at that step. Another class is explained live with the newest checkpoint.'}),
      rejectedNote(index),
      element('div', {class: 'controls'}, [element('label', {text: 'step '}), steps, element('label', {text: ' panel '}), panel,
        element('label', {text: ' explained class '}), target]),
      status, holder, element('h3', {text: `Sanity checks (step ${index.sanity_step ?? '-'})`}), sanityTable(index),
      element('h3', {text: 'Faithfulness over training'}));
    await draw();
    await drawFaithfulness(container, run);
  } catch (error) {
    showError(container, error);
  }
}

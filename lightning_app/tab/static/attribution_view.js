// The attribution view: probe images x methods at full resolution, each method's column headed by its
// sanity verdict, a step selector, the sanity table and the faithfulness metrics over training.
import {element, getJSON, query, showError} from './api.js';
import {lineChart} from './charts.js';

function verdict(method, sanity, threshold) {
  const numbers = sanity[method];
  if (!numbers) return element('div', {class: 'verdict unknown', text: 'not checked'});
  const r = numbers.randomisation_correlation.toFixed(2);
  return numbers.rejected
    ? element('div', {class: 'verdict rejected', text: `REJECTED: maps barely change with a randomised model (r = ${r} > ${threshold})`})
    : element('div', {class: 'verdict passed', text: `passes the randomisation check (r = ${r})`});
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

function grid(run, index, step, panel) {
  const methods = index.methods;
  const head = element('tr', {}, [element('th', {text: 'image'}), ...methods.map((m) => element('th', {}, [
    element('div', {text: m}), verdict(m, index.sanity, index.randomisation_threshold)]))]);
  const rows = index.images.map((image) => element('tr', {}, [
    element('td', {class: 'caption', text: `#${image.index}\ntrue ${image.label ?? '-'}\nexplained ${image.explained} p=${image.probability.toFixed(2)}`}),
    ...methods.map((m) => element('td', {}, [element('img', {
      class: 'attribution', alt: `${m} #${image.index}`,
      src: `./attributions/image?${query({run, step, method: m, image: image.position, panel})}`,
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

export async function renderAttributions(container, run) {
  container.replaceChildren();
  try {
    const index = await getJSON(`./attributions?${query({run})}`);
    const steps = element('select', {id: 'attribution-step'}, index.steps.map((s) => element('option', {value: String(s), text: `step ${s}`})));
    steps.value = String(index.steps[index.steps.length - 1]);
    const panel = element('select', {id: 'attribution-panel'}, ['overlay', 'attribution', 'input'].map((p) => element('option', {value: p, text: p})));
    const holder = element('div');
    const draw = () => holder.replaceChildren(grid(run, index, steps.value, panel.value));
    steps.addEventListener('change', draw);
    panel.addEventListener('change', draw);
    container.append(
      element('h2', {text: `Attributions: ${run}`}),
      element('p', {text: 'Each map explains the class shown under "explained" (green: raises its score, red: lowers it), '
        + 'on the 98th-percentile scale of the method at that step. To explain another class, use the Explorer.'}),
      element('div', {class: 'controls'}, [element('label', {text: 'step '}), steps, element('label', {text: ' panel '}), panel]),
      holder, element('h3', {text: `Sanity checks (step ${index.sanity_step ?? '-'})`}), sanityTable(index),
      element('h3', {text: 'Faithfulness over training'}));
    draw();
    await drawFaithfulness(container, run);
  } catch (error) {
    showError(container, error);
  }
}

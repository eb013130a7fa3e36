// The LCA view: loss change against the sum of LCA, LCA per layer and per class, helped/hurt/zero
// fractions, peak moments, a second run beside it, and a layer's units ranked by LCA.
import {element, getJSON, query, showError} from './api.js';
import {barChart, lineChart} from './charts.js';


function controls(state, redraw) {
  const cumulative = element('select', {id: 'lca-mode'}, [
    element('option', {value: '0', text: 'per step'}), element('option', {value: '1', text: 'cumulative'}),
  ]);
  const smooth = element('input', {id: 'lca-smooth', type: 'number', min: '1', value: '1', title: 'moving average over steps (1: raw values)'});
  const scale = element('select', {id: 'lca-scale'}, [
    element('option', {value: 'symlog', text: 'symmetric log'}), element('option', {value: 'linear', text: 'linear'}),
  ]);
  const update = () => {
    Object.assign(state, {cumulative: cumulative.value, smooth: smooth.value, symlog: scale.value === 'symlog'});
    redraw();
  };
  for (const node of [cumulative, smooth, scale]) node.addEventListener('change', update);
  return element('div', {class: 'controls'}, [
    element('label', {text: 'values '}), cumulative,
    element('label', {text: ' moving average (steps) '}), smooth,
    element('label', {text: ' value axis '}), scale,
  ]);
}

function summaryTable(summary) {
  const s = summary.summary;
  const rows = [
    ['steps', s.iterations], ['loss change', s.loss_change], ['sum of LCA', s.lca_sum],
    ['conservation error', s.conservation_rel_error], ['integrator', s.integrator],
    ['mean helped fraction', s.mean_helped_fraction], ['mean hurt fraction', s.mean_hurt_fraction],
    ['mean zero fraction', s.mean_zero_fraction],
  ];
  return element('table', {class: 'numbers'}, rows.map(([name, value]) => element('tr', {}, [
    element('th', {text: name}), element('td', {text: typeof value === 'number' && !Number.isInteger(value) ? value.toPrecision(4) : String(value)}),
  ])));
}

async function drawPeaks(container, run) {
  const box = element('div', {class: 'peaks', text: 'peak moments: computing...'});
  container.append(box);
  try {
    const peaks = await getJSON(`./lca/peaks?${query({run})}`);
    const c = peaks.counts;
    box.textContent = `peak moments (strict local minima): ${c.peaks} found; synchronised in >= ${c.synchronised_min_layers} ` +
      `layers at the same class and step: ${c.synchronised_peaks}, against ${c.synchronised_expected_independent.toFixed(1)} ` +
      `expected if layers peaked independently and ${c.synchronised_expected_under_shift.toFixed(1)} under ` +
      `${c.null_draws} circular shifts (p = ${c.synchronised_p_value.toPrecision(3)})`;
  } catch (error) {
    box.textContent = '';
    showError(box, error);
  }
}

async function drawUnits(container, run, layer) {
  container.replaceChildren(element('h3', {text: `${layer}: units ranked by LCA (most helpful first)`}));
  try {
    const units = await getJSON(`./lca/units?${query({run, layer, buckets: buckets(container)})}`);
    const chart = element('div', {class: 'chart', id: 'lca-units-chart'});
    container.append(chart);
    await lineChart(chart, units.top_series, {title: `cumulative LCA of the ${units.top_series.length} most helpful units`, ytitle: 'cumulative LCA'});
    const list = units.ranking.slice(0, 20).map((u) => `${u.unit}: ${u.lca.toPrecision(3)}`).join(', ');
    container.append(element('p', {text: `total LCA per unit: ${list}${units.ranking.length > 20 ? ', ...' : ''}`}));
    const rendered = units.ranking.filter((u) => String(u.unit) in units.renders);
    if (rendered.length) {
      container.append(element('p', {text: 'feature visualisations of its rendered units, in LCA order:'}),
        element('div', {class: 'gallery', id: 'lca-units-renders'}, rendered.map((u) => {
          const r = units.renders[String(u.unit)];
          return element('figure', {}, [element('img', {class: 'render', alt: `unit ${u.unit}`,
            src: `./feature_vis/render?${query({run, layer, step: r.step, position: r.position})}`}),
          element('figcaption', {text: `unit ${u.unit}: LCA ${u.lca.toPrecision(3)}`})]);
        })));
    }
  } catch (error) {
    showError(container, error);
  }
}

async function drawComparison(container, run, other) {
  container.replaceChildren();
  if (!other) return;
  try {
    const [a, b] = await Promise.all([run, other].map((r) => getJSON(`./lca/summary?${query({run: r})}`)));
    const names = Object.keys(a.tensors);
    const chart = element('div', {class: 'chart', id: 'lca-compare-chart'});
    container.append(chart);
    await barChart(chart, [
      {name: run, x: names, y: names.map((n) => a.tensors[n])},
      {name: other, x: names, y: names.map((n) => (n in b.tensors ? b.tensors[n] : null))},
    ], {title: 'total LCA per parameter tensor, two runs', ytitle: 'LCA'});
  } catch (error) {
    showError(container, error);
  }
}

// Min/max pairs per two pixels of the chart: one point per pixel, every peak kept.
function buckets(container) {
  return Math.max(100, Math.round(container.clientWidth / 2));
}

export async function renderLCA(container, run, runs) {
  container.replaceChildren();
  delete container.dataset.drawnMs;
  const state = {cumulative: '0', smooth: '1', symlog: true};
  const charts = element('div');
  const units = element('div', {class: 'units'});
  const compare = element('div');
  const others = runs.filter((r) => r.lca && r.name !== run);
  const compareSelect = element('select', {id: 'lca-compare'}, [element('option', {value: '', text: '(no second run)'}),
    ...others.map((r) => element('option', {value: r.name, text: r.name}))]);
  compareSelect.addEventListener('change', () => drawComparison(compare, run, compareSelect.value));
  const fetchSeries = () => getJSON(`./lca/series?${query({run, buckets: buckets(container), cumulative: state.cumulative, smooth: state.smooth})}`);
  const draw = async (series) => {
    charts.replaceChildren();
    const word = state.cumulative === '1' ? 'cumulative ' : '';
    const specs = [
      ['loss', series.loss, `${word}loss change and sum of LCA`, 'loss change'],
      ['layers', series.layers, `${word}LCA per layer (click a line: its units)`, 'LCA'],
      ['classes', series.classes, `${word}LCA per class`, 'LCA'],
      ['fractions', series.fractions, 'fraction of parameters that helped, hurt or did not move', 'fraction'],
    ];
    for (const [key, data, title, ytitle] of specs) {
      if (!data) continue;
      const chart = element('div', {class: 'chart', id: `lca-${key}-chart`});
      charts.append(chart);
      const symlog = state.symlog && key !== 'fractions';
      await lineChart(chart, data, {title, ytitle, symlog});
      if (key === 'layers') chart.on('plotly_click', (event) => drawUnits(units, run, data[event.points[0].curveNumber].name));
    }
  };
  const redraw = async () => {
    charts.replaceChildren(element('p', {text: 'loading...'}));
    try {
      await draw(await fetchSeries());
    } catch (error) {
      charts.replaceChildren();
      showError(charts, error);
    }
  };
  try {
    const started = performance.now();
    const [summary, series] = await Promise.all([getJSON(`./lca/summary?${query({run})}`), fetchSeries()]);
    container.append(element('h2', {text: `Loss Change Allocation: ${run}`}), summaryTable(summary), controls(state, redraw),
      charts, units, element('div', {class: 'controls'}, [element('label', {text: 'compare with '}), compareSelect]), compare);
    await draw(series);
    container.dataset.drawnMs = String(Math.round(performance.now() - started));
    await drawPeaks(container, run);
  } catch (error) {
    showError(container, error);
  }
}

import { ActivityIndicator, ScrollView, Text, View } from "react-native";

import type { DeploymentState, StackState } from "../cloudws";
import { StatusPill } from "./StatusPill";
import { LEVEL_COLORS, styles } from "./theme";

/**
 * One deployment: status and attempt, the layer bar, the failure banner, its
 * stacks by layer and the latest log lines (newest first). Everything comes
 * from the `DeploymentState`, which a snapshot started and events fold into.
 */
export function DeploymentScreen({ state, error }: { state: DeploymentState | null; error: string | null }) {
  if (state === null) {
    return (
      <View style={styles.section}>
        {error ? (
          <Text style={styles.error} accessibilityRole="alert">
            {error}
          </Text>
        ) : (
          <ActivityIndicator accessibilityLabel="Loading the deployment" />
        )}
      </View>
    );
  }
  const stacks = [...state.stacks.values()];
  const failed = stacks.filter((stack) => stack.status === "failed");
  const total = state.totalLayers ?? 0;
  const layer = state.currentLayer ?? 0;
  const lines = [...state.logCounts.values()].reduce((sum, count) => sum + count, 0);
  return (
    <ScrollView contentContainerStyle={{ paddingBottom: 24 }} testID="deployment-screen">
      <View style={styles.section}>
        <View style={{ flexDirection: "row", alignItems: "center", gap: 8 }}>
          <StatusPill status={state.status} testID="status" />
          <Text style={styles.muted} testID="attempt">
            attempt {state.attempt}
          </Text>
          <Text style={[styles.muted, { marginLeft: "auto" }]} testID="seq">
            #{state.seq}
          </Text>
        </View>
        <Text style={[styles.body, { marginTop: 10 }]} testID="layers">
          {total > 0 ? `Layer ${layer} of ${total}` : "No layers reported yet"}
        </Text>
        {total > 0 ? (
          <View style={styles.bar}>
            <View style={[styles.barFill, { width: `${Math.min(100, (layer / total) * 100)}%` }]} />
          </View>
        ) : null}
        {state.environment ? <Text style={[styles.muted, { marginTop: 6 }]}>{state.environment}</Text> : null}
      </View>

      {state.status === "failed" || failed.length > 0 ? <FailureBanner state={state} failed={failed} /> : null}

      <View style={styles.section}>
        <Text style={styles.sectionTitle}>Stacks ({stacks.length})</Text>
        {stacks.length === 0 ? <Text style={styles.muted}>None started yet.</Text> : null}
        {byLayer(stacks).map(([stackLayer, members]) => (
          <View key={stackLayer} style={{ marginBottom: 6 }}>
            <Text style={[styles.muted, { marginTop: 4 }]}>{stackLayer === null ? "No layer" : `Layer ${stackLayer}`}</Text>
            {members.map((stack) => (
              <View key={stack.name} style={{ flexDirection: "row", alignItems: "center", paddingVertical: 6, gap: 8 }} testID={`stack-${stack.name}`}>
                <View style={styles.rowMain}>
                  <Text style={styles.body}>{stack.name}</Text>
                  <Text style={styles.muted}>{stackDetail(stack)}</Text>
                </View>
                <StatusPill status={stack.status} testID={`stack-status-${stack.name}`} />
              </View>
            ))}
          </View>
        ))}
      </View>

      <View style={styles.section}>
        <Text style={styles.sectionTitle}>Logs</Text>
        <Text style={styles.muted} testID="log-count">
          {lines} {lines === 1 ? "line" : "lines"}
          {NOTABLE_LEVELS.filter((level) => (state.logCounts.get(level) ?? 0) > 0)
            .map((level) => ` · ${state.logCounts.get(level)} ${level}`)
            .join("")}
        </Text>
        {[...state.recentLogs].reverse().map((line) => (
          <View key={line.seq} style={styles.logLine} testID="log-line">
            <Text style={styles.muted}>
              <Text style={{ color: LEVEL_COLORS[line.level] ?? "#1f2937", fontWeight: "600" }}>{line.level}</Text>
              {line.stack_name ? ` · ${line.stack_name}` : ""}
              {line.timestamp ? ` · ${line.timestamp.slice(11, 19)}` : ""}
            </Text>
            <Text style={styles.mono}>{line.message}</Text>
          </View>
        ))}
      </View>
    </ScrollView>
  );
}

/** The levels the log count names, in order of severity. */
const NOTABLE_LEVELS = ["warning", "error", "critical"];

function FailureBanner({ state, failed }: { state: DeploymentState; failed: StackState[] }) {
  return (
    <View style={styles.banner} accessibilityRole="alert" testID="failure-banner">
      <Text style={styles.bannerTitle}>
        {failed.length > 0 ? `${failed.map((stack) => stack.name).join(", ")} failed` : "The deployment failed"}
      </Text>
      {failed.map((stack) =>
        stack.error_message ? (
          <Text key={stack.name} style={styles.bannerText}>
            {failed.length > 1 ? `${stack.name}: ` : ""}
            {stack.error_message}
          </Text>
        ) : null,
      )}
      {state.errorMessage && !failed.some((stack) => stack.error_message === state.errorMessage) ? (
        <Text style={styles.bannerText}>{state.errorMessage}</Text>
      ) : null}
    </View>
  );
}

function byLayer(stacks: StackState[]): [number | null, StackState[]][] {
  const groups = new Map<number | null, StackState[]>();
  for (const stack of stacks) {
    groups.set(stack.layer, [...(groups.get(stack.layer) ?? []), stack]);
  }
  return [...groups.entries()].sort(([a], [b]) => (a ?? Number.MAX_SAFE_INTEGER) - (b ?? Number.MAX_SAFE_INTEGER));
}

function stackDetail(stack: StackState): string {
  const parts: string[] = [];
  if (stack.environment) {
    parts.push(stack.environment);
  }
  if (stack.status === "deploying" && stack.resources_done !== null) {
    parts.push(`${stack.resources_done}${stack.resource_count ? ` of ${stack.resource_count}` : ""} resources`);
  } else if (stack.resource_count !== null) {
    parts.push(`${stack.resource_count} resources`);
  }
  if (stack.duration_seconds !== null) {
    parts.push(`${stack.duration_seconds.toFixed(1)} s`);
  }
  return parts.join(" · ") || stack.status;
}

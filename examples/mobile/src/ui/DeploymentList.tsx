import { FlatList, Pressable, Text, View } from "react-native";

import type { DeploymentSummary } from "../cloudws";
import { StatusPill } from "./StatusPill";
import { styles } from "./theme";

/** The recent deployments, newest first; a tap opens one. */
export function DeploymentList({
  deployments,
  onOpen,
  onRefresh,
}: {
  deployments: readonly DeploymentSummary[];
  onOpen: (deploymentId: string) => void;
  onRefresh: () => void;
}) {
  return (
    <FlatList
      data={deployments}
      keyExtractor={(row) => row.deployment_id}
      refreshing={false}
      onRefresh={onRefresh}
      ListEmptyComponent={
        <View style={styles.section}>
          <Text style={styles.body}>No deployments yet.</Text>
          <Text style={styles.muted}>They appear here as soon as an orchestrator reports one.</Text>
        </View>
      }
      renderItem={({ item }) => (
        <Pressable
          style={({ pressed }) => [styles.row, pressed ? { backgroundColor: "#e5e7eb" } : null]}
          onPress={() => onOpen(item.deployment_id)}
          accessibilityRole="button"
          accessibilityLabel={`${item.deployment_id}, ${item.status}`}
          testID={`deployment-${item.deployment_id}`}
        >
          <View style={styles.rowMain}>
            <Text style={styles.rowTitle} numberOfLines={1}>
              {item.deployment_id}
            </Text>
            <Text style={styles.muted} numberOfLines={1}>
              {[
                item.environment,
                item.attempt > 1 ? `attempt ${item.attempt}` : null,
                item.total_layers ? `layer ${item.current_layer ?? 0} of ${item.total_layers}` : null,
                item.updated_at ? ago(item.updated_at) : null,
              ]
                .filter(Boolean)
                .join(" · ")}
            </Text>
          </View>
          <StatusPill status={item.status} />
        </Pressable>
      )}
    />
  );
}

/** "12 s ago", "5 min ago", or the date. */
export function ago(timestamp: string, now = Date.now()): string {
  const seconds = Math.max(0, Math.round((now - Date.parse(timestamp)) / 1000));
  if (Number.isNaN(seconds)) {
    return timestamp;
  }
  if (seconds < 60) {
    return `${seconds} s ago`;
  }
  if (seconds < 3600) {
    return `${Math.floor(seconds / 60)} min ago`;
  }
  if (seconds < 86_400) {
    return `${Math.floor(seconds / 3600)} h ago`;
  }
  return timestamp.slice(0, 10);
}

import { Text, View } from "react-native";

import type { Connection } from "../monitor";
import { STATUS_COLORS, styles } from "./theme";

/** A deployment's or a stack's status, in its color. */
export function StatusPill({ status, testID }: { status: string; testID?: string }) {
  return (
    <View style={[styles.pill, { backgroundColor: STATUS_COLORS[status] ?? "#6b7280" }]}>
      <Text style={styles.pillText} testID={testID}>
        {status}
      </Text>
    </View>
  );
}

const CONNECTION_LABELS: Record<Connection, string> = {
  idle: "Offline",
  connecting: "Connecting",
  open: "Live",
  reconnecting: "Reconnecting",
  closed: "Offline",
  paused: "Paused",
};

/** The connection, in the header: Live, Paused (in the background), Reconnecting … */
export function ConnectionPill({ connection }: { connection: Connection }) {
  const color = connection === "open" ? "#15803d" : connection === "paused" ? "#6b7280" : "#b45309";
  return (
    <View style={[styles.pill, { backgroundColor: color }]} accessibilityLiveRegion="polite">
      <Text style={styles.pillText} testID="connection">
        {CONNECTION_LABELS[connection]}
      </Text>
    </View>
  );
}
